// Counts the words of the lines given as arguments with the installed Tidemark library and
// prints "word count" lines, sorted.
#include <cstdio>
#include <string>

#include "tidemark/tidemark.h"

using namespace tidemark;

int main(int argc, char** argv) {
  std::string md = "| data\n";
  for (int i = 1; i < argc; ++i) md += std::to_string(i) + " | " + argv[i] + "\n";
  Graph g;
  Table lines = debug::table_from_markdown(g, md);
  Table counts = lines.select({{"word", str::split(col("data"), "_")}})
                     .flatten("word")
                     .groupby({"word"})
                     .reduce({{"word", col("word")}, {"count", reducers::count()}});
  std::fputs(debug::table_to_string(counts).c_str(), stdout);
  return 0;
}
