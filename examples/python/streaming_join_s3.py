"""A streaming join whose state is kept on S3 (or any S3-compatible store).

    AWS_ENDPOINT_URL=http://127.0.0.1:7480 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... \\
    python examples/python/streaming_join_s3.py ORDERS_DIR USERS_DIR OUT.jsonl s3://bucket/prefix
"""
import os
import sys

import tidemark as pw

orders_dir, users_dir, out, state_url = sys.argv[1:5]


class Order(pw.Schema):
    order_id: int = pw.column_definition(primary_key=True)
    user: str
    amount: float


class User(pw.Schema):
    user: str = pw.column_definition(primary_key=True)
    country: str


orders = pw.io.csv.read(orders_dir, schema=Order, mode="streaming", name="orders")
users = pw.io.csv.read(users_dir, schema=User, mode="streaming", name="users")
joined = orders.join_left(users, orders.user == users.user).select(
    orders.order_id, orders.user, pw.this.amount, country=pw.coalesce(users.country, "unknown"))
per_country = joined.groupby(pw.this.country).reduce(
    pw.this.country, total=pw.reducers.sum(pw.this.amount), n=pw.reducers.count())
pw.io.jsonlines.write(per_country, out, name="per_country")

settings = pw.io.s3.AwsS3Settings(endpoint=os.environ.get("AWS_ENDPOINT_URL"), with_path_style=True,
                                  region=os.environ.get("AWS_REGION", "us-east-1"))
pw.run(persistence_config=pw.persistence.Config(pw.persistence.Backend.s3(state_url, settings),
                                                snapshot_interval_ms=1000))
