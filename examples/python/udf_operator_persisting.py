"""A UDF pipeline in operator persisting: operators keep their state in the storage, so a
restart loads it instead of re-reading the input; the non-deterministic UDF's stored result
is what a later retraction carries.

    python examples/python/udf_operator_persisting.py INPUT_DIR OUT.csv STATE_DIR
"""
import random
import sys

import tidemark as pw

inp, out, state = sys.argv[1:4]


class Review(pw.Schema):
    review_id: int = pw.column_definition(primary_key=True)
    text: str


@pw.udf(deterministic=False)
def sentiment(text: str) -> float:
    # stands for a model call whose answer may differ between calls
    return round(text.count("good") - text.count("bad") + random.random() / 10, 3)


@pw.udf(deterministic=True, cache_strategy=pw.udfs.DiskCache())
def word_count(text: str) -> int:
    return len(text.split())


reviews = pw.io.csv.read(inp, schema=Review, mode="streaming", name="reviews")
scored = reviews.select(pw.this.review_id, score=sentiment(pw.this.text), words=word_count(pw.this.text))
summary = scored.reduce(n=pw.reducers.count(), avg_score=pw.reducers.avg(pw.this.score),
                        words=pw.reducers.sum(pw.this.words))
pw.io.csv.write(summary, out, name="summary")

pw.run(persistence_config=pw.persistence.Config(
    pw.persistence.Backend.filesystem(state),
    persistence_mode=pw.PersistenceMode.OPERATOR_PERSISTING, snapshot_interval_ms=500))
