// tidemark._engine: the Python binding of the C++ engine (nanobind).
//
// A thin layer: Graph / Table / Expr / Subject / persistence objects mirror the C++ API; the
// Pathway-style Python API lives in python/tidemark/*.py on top of it.
//
// GIL discipline: run() and compute_changes() release the GIL for the whole run; every Python
// callback (UDFs, subscribe callbacks, deduplicate acceptors) takes it. Python callables are
// held through PyCallable, whose copies never touch Python reference counts and whose last
// owner takes the GIL to drop the reference. Nothing here starts a thread at import.
#include <nanobind/nanobind.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "storage/azure_store.h"
#include "tidemark/tidemark.h"

namespace nb = nanobind;
using namespace nb::literals;
namespace td = tidemark;

namespace {

// ---------------------------------------------------------------------------------------------
// Values

// Module-level references, never released (they outlive the interpreter's finalization).
nb::handle g_datetime_mod, g_timedelta, g_datetime, g_utc, g_epoch_naive, g_epoch_utc, g_json_cls, g_json_mod;

struct PyKey {
  td::Key key;
};

void ensure_modules() {
  if (g_datetime_mod.ptr()) return;
  g_datetime_mod = nb::module_::import_("datetime").release();
  g_timedelta = nb::object(g_datetime_mod.attr("timedelta")).release();
  g_datetime = nb::object(g_datetime_mod.attr("datetime")).release();
  g_utc = nb::object(g_datetime_mod.attr("timezone").attr("utc")).release();
  g_epoch_naive = g_datetime(1970, 1, 1).release();
  g_epoch_utc = g_datetime(1970, 1, 1, "tzinfo"_a = g_utc).release();
  g_json_mod = nb::module_::import_("json").release();
}

nb::handle json_mod() {
  ensure_modules();
  return g_json_mod;
}

int64_t td_to_ns(nb::handle td) {
  int64_t days = nb::cast<int64_t>(td.attr("days"));
  int64_t secs = nb::cast<int64_t>(td.attr("seconds"));
  int64_t us = nb::cast<int64_t>(td.attr("microseconds"));
  return ((days * 86400 + secs) * 1000000 + us) * 1000;
}

nb::object ns_to_td(int64_t ns) {
  // Floor to microseconds (Python's timedelta resolution).
  int64_t us = ns >= 0 ? ns / 1000 : -((-ns + 999) / 1000);
  return g_timedelta("microseconds"_a = us);
}

td::Value to_value(nb::handle o) {
  if (o.is_none()) return td::Value();
  if (PyBool_Check(o.ptr())) return td::Value(o.ptr() == Py_True);
  if (PyLong_CheckExact(o.ptr()) || PyLong_Check(o.ptr())) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o.ptr(), &overflow);
    if (overflow) throw std::invalid_argument("integer out of the 64-bit range: " + nb::cast<std::string>(nb::repr(o)));
    return td::Value(static_cast<int64_t>(v));
  }
  if (PyFloat_Check(o.ptr())) return td::Value(PyFloat_AsDouble(o.ptr()));
  if (PyUnicode_Check(o.ptr())) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(o.ptr(), &n);
    if (!s) throw nb::python_error();
    return td::Value(std::string(s, static_cast<size_t>(n)));
  }
  if (PyBytes_Check(o.ptr())) {
    return td::Value::bytes(std::string(PyBytes_AsString(o.ptr()), static_cast<size_t>(PyBytes_Size(o.ptr()))));
  }
  if (nb::isinstance<PyKey>(o)) return td::Value(nb::cast<PyKey&>(o).key);
  if (PyTuple_Check(o.ptr()) || PyList_Check(o.ptr())) {
    std::vector<td::Value> items;
    for (nb::handle h : o) items.push_back(to_value(h));
    return td::Value::tuple(std::move(items));
  }
  ensure_modules();
  if (nb::isinstance(o, g_datetime)) {
    if (o.attr("tzinfo").is_none()) return td::Value(td::DateTimeNaive{td_to_ns(o - g_epoch_naive)});
    return td::Value(td::DateTimeUtc{td_to_ns(o - g_epoch_utc)});
  }
  if (nb::isinstance(o, g_timedelta)) return td::Value(td::Duration{td_to_ns(o)});
  if (g_json_cls.ptr() && nb::isinstance(o, g_json_cls)) {
    nb::object text = json_mod().attr("dumps")(o.attr("value"));
    return td::Value::json(nb::cast<std::string>(text));
  }
  if (PyDict_Check(o.ptr())) {
    nb::object text = json_mod().attr("dumps")(o);
    return td::Value::json(nb::cast<std::string>(text));
  }
  // numpy scalars and other numbers
  if (nb::hasattr(o, "__index__")) return to_value(nb::steal(PyNumber_Index(o.ptr())));
  if (nb::hasattr(o, "__float__")) return td::Value(nb::cast<double>(o.attr("__float__")()));
  throw std::invalid_argument("cannot convert a Python " + nb::cast<std::string>(o.type().attr("__name__")) +
                              " to a Tidemark value: " + nb::cast<std::string>(nb::repr(o)));
}

nb::object from_value(const td::Value& v) {
  switch (v.type()) {
    case td::DType::kAny:
    case td::DType::kNone: return nb::none();
    case td::DType::kBool: return nb::bool_(v.as_bool());
    case td::DType::kInt: return nb::int_(v.as_int());
    case td::DType::kFloat: return nb::float_(v.as_float());
    case td::DType::kString: {
      const std::string_view s = v.as_string();
      return nb::steal(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace"));
    }
    case td::DType::kBytes: return nb::bytes(v.as_bytes().data(), v.as_bytes().size());
    case td::DType::kPointer: return nb::cast(PyKey{v.as_pointer()});
    case td::DType::kTuple: {
      const auto& items = v.as_tuple();
      nb::object t = nb::steal(PyTuple_New(static_cast<Py_ssize_t>(items.size())));
      for (size_t i = 0; i < items.size(); ++i)
        PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), from_value(items[i]).release().ptr());
      return t;
    }
    case td::DType::kDateTimeNaive: ensure_modules(); return g_epoch_naive + ns_to_td(v.as_datetime_naive());
    case td::DType::kDateTimeUtc: ensure_modules(); return g_epoch_utc + ns_to_td(v.as_datetime_utc());
    case td::DType::kDuration: ensure_modules(); return ns_to_td(v.as_duration());
    case td::DType::kJson: {
      const std::string_view text = v.as_json();
      nb::object parsed = json_mod().attr("loads")(nb::str(text.data(), text.size()));
      if (g_json_cls.ptr()) return g_json_cls(parsed);
      return parsed;
    }
  }
  return nb::none();
}

nb::tuple row_to_tuple(const td::Row& row) {
  nb::object t = nb::steal(PyTuple_New(static_cast<Py_ssize_t>(row.size())));
  for (size_t i = 0; i < row.size(); ++i)
    PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), from_value(row[i]).release().ptr());
  return nb::borrow<nb::tuple>(t);
}

td::Row to_row(nb::handle seq) {
  td::Row row;
  for (nb::handle h : seq) row.push_back(to_value(h));
  return row;
}

td::DType parse_dtype(const std::string& s) {
  static const std::pair<const char*, td::DType> kNames[] = {
      {"any", td::DType::kAny},       {"none", td::DType::kNone},         {"bool", td::DType::kBool},
      {"int", td::DType::kInt},       {"float", td::DType::kFloat},       {"str", td::DType::kString},
      {"bytes", td::DType::kBytes},   {"pointer", td::DType::kPointer},   {"tuple", td::DType::kTuple},
      {"datetime_naive", td::DType::kDateTimeNaive}, {"datetime_utc", td::DType::kDateTimeUtc},
      {"duration", td::DType::kDuration}, {"json", td::DType::kJson}};
  for (auto& [n, d] : kNames)
    if (s == n) return d;
  throw std::invalid_argument("unknown type name '" + s + "'");
}

td::Type make_type(const std::string& dtype, bool optional) { return td::Type{parse_dtype(dtype), optional}; }

// Schema from [(name, dtype, optional), ...]
using PySchema = std::vector<std::tuple<std::string, std::string, bool>>;
td::Schema make_schema(const PySchema& cols) {
  std::vector<td::Column> out;
  for (auto& [n, d, o] : cols) out.push_back({n, make_type(d, o)});
  return td::Schema(std::move(out));
}
PySchema schema_to_py(const td::Schema& s) {
  PySchema out;
  for (auto& c : s.columns()) out.emplace_back(c.name, td::dtype_name(c.type.base), c.type.optional);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Python callables held by C++ std::functions

struct PyCallable {
  nb::object fn;
  explicit PyCallable(nb::object f) : fn(std::move(f)) {}
  ~PyCallable() {
    if (!Py_IsInitialized()) {
      fn.release();  // the interpreter is gone: leak rather than crash
      return;
    }
    nb::gil_scoped_acquire gil;
    fn.reset();
  }
};

// The first Python exception raised by a callback during a run; the Python layer re-raises
// it as the cause of the run's error.
std::mutex g_err_mu;
nb::object g_pending_error;

void remember_error(nb::python_error& e) {
  std::lock_guard<std::mutex> lock(g_err_mu);
  if (!g_pending_error.is_valid()) {
    g_pending_error = nb::borrow(e.value());
#if PY_VERSION_HEX < 0x030C0000
    nb::object tb = e.traceback();
    if (tb.is_valid() && !tb.is_none()) PyException_SetTraceback(g_pending_error.ptr(), tb.ptr());
#endif
  }
}

// "ZeroDivisionError: division by zero"
std::string describe_exception(nb::python_error& e) {
  try {
    std::string name = nb::cast<std::string>(e.type().attr("__qualname__"));
    std::string msg = nb::cast<std::string>(nb::str(e.value()));
    return msg.empty() ? name : name + ": " + msg;
  } catch (...) {
    std::string what = e.what();
    return what.substr(0, what.find('\n'));
  }
}

std::string describe_args(const std::vector<td::Value>& args) {
  std::string s = "(";
  for (size_t i = 0; i < args.size(); ++i) {
    if (i) s += ", ";
    s += args[i].type() == td::DType::kString ? "'" + args[i].to_string() + "'" : args[i].to_string();
  }
  return s + ")";
}

td::UserFunction make_udf(nb::object fn, std::string label) {
  auto holder = std::make_shared<PyCallable>(std::move(fn));
  return [holder, label](const std::vector<td::Value>& args) -> td::Value {
    nb::gil_scoped_acquire gil;
    try {
      nb::object t = nb::steal(PyTuple_New(static_cast<Py_ssize_t>(args.size())));
      for (size_t i = 0; i < args.size(); ++i)
        PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), from_value(args[i]).release().ptr());
      nb::object r = nb::steal(PyObject_CallObject(holder->fn.ptr(), t.ptr()));
      if (!r.is_valid()) throw nb::python_error();
      return to_value(r);
    } catch (nb::python_error& e) {
      std::string first = describe_exception(e);
      remember_error(e);
      throw std::runtime_error(label + " raised " + first + " on arguments " + describe_args(args));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(label + " returned a value Tidemark cannot store: " + e.what() + " (arguments " +
                               describe_args(args) + ")");
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Graph and tables

struct PyGraph {
  std::unique_ptr<td::Graph> g = std::make_unique<td::Graph>();
  bool ran = false;
  // Subjects and sinks keep Python objects; they live as long as the graph.
};

struct PyTable {
  std::shared_ptr<PyGraph> graph;
  td::Table t;
};

using Outputs = std::vector<std::pair<std::string, td::Expr>>;
std::vector<td::NamedExpr> named(const Outputs& o) {
  std::vector<td::NamedExpr> out;
  for (auto& [n, e] : o) out.push_back({n, e});
  return out;
}

void check_graph(const PyTable& t) {
  if (t.graph->ran) throw std::invalid_argument("this table belongs to a graph that has already been run; build the pipeline again");
}

PyTable wrap(const PyTable& like, td::Table t) { return PyTable{like.graph, t}; }

td::io::Format parse_format(const std::string& f) {
  if (f == "csv") return td::io::Format::kCsv;
  if (f == "json" || f == "jsonlines") return td::io::Format::kJsonLines;
  if (f == "plaintext") return td::io::Format::kPlaintext;
  if (f == "binary") return td::io::Format::kBinary;
  throw std::invalid_argument("unknown format '" + f + "' (csv, json, plaintext or binary)");
}

td::io::fs::ReadOptions read_options(const std::string& format, const PySchema& schema, const std::string& mode,
                                     const std::string& name, const std::vector<std::string>& pk,
                                     uint64_t autocommit_ms, bool skip_bad_rows, const std::string& delimiter) {
  td::io::fs::ReadOptions o;
  o.format = parse_format(format);
  o.schema = make_schema(schema);
  if (mode == "static") o.mode = td::io::Mode::kStatic;
  else if (mode == "streaming") o.mode = td::io::Mode::kStreaming;
  else throw std::invalid_argument("mode must be 'static' or 'streaming', not '" + mode + "'");
  o.name = name;
  o.primary_key = pk;
  o.autocommit_duration_ms = autocommit_ms;
  o.skip_bad_rows = skip_bad_rows;
  if (delimiter.size() != 1) throw std::invalid_argument("csv delimiter must be one character");
  o.csv_delimiter = delimiter[0];
  return o;
}

td::persistence::AwsS3Settings make_s3(const std::string& bucket, const std::string& access_key,
                                       const std::string& secret, bool path_style, const std::string& region,
                                       const std::string& endpoint, const std::string& token) {
  td::persistence::AwsS3Settings s;
  s.bucket_name = bucket;
  s.access_key = access_key;
  s.secret_access_key = secret;
  s.with_path_style = path_style;
  s.region = region;
  s.endpoint = endpoint;
  s.session_token = token;
  return s;
}

// Turns a pending Python error (from a callback) into the one to raise.
nb::object take_pending_error() {
  std::lock_guard<std::mutex> lock(g_err_mu);
  nb::object e = g_pending_error;
  g_pending_error = nb::object();
  return e.is_valid() ? e : nb::none();
}

struct RunResult {
  bool ok;
  std::string code;
  std::string message;
};

RunResult run_graph(PyGraph& g, std::optional<td::persistence::Config> cfg, bool handle_signals) {
  if (g.ran) throw std::invalid_argument("this graph has already been run");
  g.ran = true;
  td::RunOptions opts;
  opts.persistence_config = std::move(cfg);
  opts.handle_signals = handle_signals;
  td::Status st;
  {
    nb::gil_scoped_release release;
    st = td::run(*g.g, opts);
  }
  return RunResult{st.is_ok(), td::status_code_name(st.code()), st.message()};
}

}  // namespace

NB_MODULE(_engine, m) {
  m.doc() = "Tidemark engine binding (use `import tidemark as pw`).";
  nb::set_leak_warnings(false);

  nb::exception<td::GraphError>(m, "GraphError", PyExc_ValueError);

  nb::class_<PyKey>(m, "Pointer")
      .def("__repr__", [](const PyKey& k) { return "^" + k.key.to_string(); })
      .def("__str__", [](const PyKey& k) { return "^" + k.key.to_string(); })
      .def("__eq__", [](const PyKey& a, nb::handle b) {
        return nb::isinstance<PyKey>(b) && a.key == nb::cast<PyKey&>(b).key;
      })
      .def("__lt__", [](const PyKey& a, const PyKey& b) { return a.key < b.key; })
      .def("__hash__", [](const PyKey& k) { return static_cast<Py_ssize_t>(td::KeyHash{}(k.key) >> 1); })
      .def_prop_ro("lo", [](const PyKey& k) { return k.key.lo; })
      .def_prop_ro("hi", [](const PyKey& k) { return k.key.hi; });
  m.def("key_from_values", [](nb::handle values) { return PyKey{td::key_from_values(to_row(values))}; });
  m.def("_set_classes", [](nb::object json_cls) { g_json_cls = json_cls.release(); });
  m.def("_roundtrip", [](nb::handle v) { return from_value(to_value(v)); }, "v"_a.none());
  m.def("_take_pending_error", &take_pending_error);

  // ----- expressions
  nb::class_<td::Expr>(m, "Expr");
  m.def("lit", [](nb::handle v) { return td::lit(to_value(v)); }, "v"_a.none());
  m.def("col", &td::col);
  m.def("left", &td::left);
  m.def("right", &td::right);
  m.def("id", &td::id);
  m.def("left_id", &td::left_id);
  m.def("right_id", &td::right_id);
  m.def("binop", [](const std::string& op, td::Expr a, td::Expr b) -> td::Expr {
    if (op == "+") return a + b;
    if (op == "-") return a - b;
    if (op == "*") return a * b;
    if (op == "/") return a / b;
    if (op == "//") return td::floordiv(a, b);
    if (op == "%") return a % b;
    if (op == "==") return a == b;
    if (op == "!=") return a != b;
    if (op == "<") return a < b;
    if (op == "<=") return a <= b;
    if (op == ">") return a > b;
    if (op == ">=") return a >= b;
    if (op == "&") return a && b;
    if (op == "|") return a || b;
    throw std::invalid_argument("unknown operator " + op);
  });
  m.def("neg", [](td::Expr a) { return -a; });
  m.def("not_", [](td::Expr a) { return !a; });
  m.def("if_else", &td::if_else);
  m.def("coalesce", &td::coalesce);
  m.def("is_none", &td::is_none);
  m.def("is_not_none", &td::is_not_none);
  m.def("cast", [](td::Expr a, const std::string& to) { return td::cast(a, parse_dtype(to)); });
  m.def("make_tuple", &td::make_tuple);
  m.def("get", &td::get);
  m.def("str_lower", &td::str::lower);
  m.def("str_upper", &td::str::upper);
  m.def("str_len", &td::str::len);
  m.def("str_strip", &td::str::strip);
  m.def("str_contains", &td::str::contains);
  m.def("str_startswith", &td::str::startswith);
  m.def("str_endswith", &td::str::endswith);
  m.def("str_replace", &td::str::replace);
  m.def("str_split", [](td::Expr s, std::optional<td::Expr> sep) { return sep ? td::str::split(s, *sep) : td::str::split(s); },
        "s"_a, "sep"_a.none());
  m.def("str_slice", &td::str::slice);
  m.def("apply", [](nb::object fn, std::vector<td::Expr> args, const std::string& dtype, bool optional,
                    bool deterministic, std::string label) {
    return td::apply(make_udf(std::move(fn), std::move(label)), std::move(args), make_type(dtype, optional), deterministic);
  });
  m.def("apply_cached", [](nb::object fn, std::vector<td::Expr> args, const std::string& dtype, bool optional,
                           const std::string& cache_name, uint64_t size_limit, std::string label) {
    return td::apply(make_udf(std::move(fn), std::move(label)), std::move(args), make_type(dtype, optional),
                     td::UdfCache{cache_name, size_limit});
  });
  m.def("reducer", [](const std::string& name, std::optional<td::Expr> e) -> td::Expr {
    namespace r = td::reducers;
    if (name == "count") return r::count();
    if (!e) throw std::invalid_argument("reducer " + name + " needs an argument");
    if (name == "sum") return r::sum(*e);
    if (name == "min") return r::min(*e);
    if (name == "max") return r::max(*e);
    if (name == "avg") return r::avg(*e);
    if (name == "count_distinct") return r::count_distinct(*e);
    if (name == "any") return r::any(*e);
    if (name == "earliest") return r::earliest(*e);
    if (name == "latest") return r::latest(*e);
    if (name == "tuple") return r::tuple(*e);
    if (name == "sorted_tuple") return r::sorted_tuple(*e);
    throw std::invalid_argument("unknown reducer " + name);
  }, "name"_a, "e"_a.none());

  // ----- graph and tables
  nb::class_<PyGraph>(m, "Graph")
      .def(nb::new_([]() { return std::make_shared<PyGraph>(); }))
      .def_prop_ro("ran", [](const PyGraph& g) { return g.ran; });

  nb::class_<PyTable>(m, "Table")
      .def("schema", [](const PyTable& t) { return schema_to_py(t.t.schema()); })
      .def_prop_ro("graph", [](const PyTable& t) { return t.graph; })
      .def_prop_ro("node", [](const PyTable& t) { return t.t.node(); })
      .def("named", [](const PyTable& t, const std::string& n) { check_graph(t); return wrap(t, t.t.named(n)); })
      .def("select", [](const PyTable& t, const Outputs& o) { check_graph(t); return wrap(t, t.t.select(named(o))); })
      .def("with_columns", [](const PyTable& t, const Outputs& o) { check_graph(t); return wrap(t, t.t.with_columns(named(o))); })
      .def("without", [](const PyTable& t, std::vector<std::string> c) { check_graph(t); return wrap(t, t.t.without(std::move(c))); })
      .def("rename", [](const PyTable& t, std::vector<std::pair<std::string, std::string>> m) { check_graph(t); return wrap(t, t.t.rename(std::move(m))); })
      .def("filter", [](const PyTable& t, td::Expr p) { check_graph(t); return wrap(t, t.t.filter(p)); })
      .def("groupby_reduce", [](const PyTable& t, std::vector<std::string> by, const Outputs& o) {
        check_graph(t);
        return wrap(t, t.t.groupby(std::move(by)).reduce(named(o)));
      })
      .def("reduce", [](const PyTable& t, const Outputs& o) { check_graph(t); return wrap(t, t.t.reduce(named(o))); })
      .def("join_select", [](const PyTable& t, const PyTable& other, std::vector<std::pair<std::string, std::string>> on,
                             const std::string& mode, const Outputs& o) {
        check_graph(t);
        td::JoinMode jm = mode == "left" ? td::JoinMode::kLeft : mode == "right" ? td::JoinMode::kRight
                        : mode == "outer" ? td::JoinMode::kOuter : td::JoinMode::kInner;
        return wrap(t, t.t.join(other.t, std::move(on), jm).select(named(o)));
      })
      .def("concat", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.concat(o.t)); })
      .def("update_rows", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.update_rows(o.t)); })
      .def("update_cells", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.update_cells(o.t)); })
      .def("difference", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.difference(o.t)); })
      .def("intersect", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.intersect(o.t)); })
      .def("restrict", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.restrict(o.t)); })
      .def("deduplicate", [](const PyTable& t, td::Expr value, nb::object acceptor, std::optional<td::Expr> instance,
                             const std::string& name) {
        check_graph(t);
        td::DeduplicateOptions o{value, {}, std::nullopt, ""};
        if (!acceptor.is_none()) {
          auto holder = std::make_shared<PyCallable>(acceptor);
          o.acceptor = [holder](const td::Value& nv, const td::Value& ov) -> bool {
            nb::gil_scoped_acquire gil;
            try {
              return nb::cast<bool>(holder->fn(from_value(nv), from_value(ov)));
            } catch (nb::python_error& e) {
              std::string what = describe_exception(e);
              remember_error(e);
              throw std::runtime_error("deduplicate acceptor raised " + what);
            }
          };
        } else {
          o.acceptor = [](const td::Value&, const td::Value&) { return true; };
        }
        o.instance = instance;
        o.name = name;
        return wrap(t, t.t.deduplicate(std::move(o)));
      }, "value"_a, "acceptor"_a.none(), "instance"_a.none(), "name"_a)
      .def("flatten", [](const PyTable& t, const std::string& c) { check_graph(t); return wrap(t, t.t.flatten(c)); })
      .def("sort", [](const PyTable& t, td::Expr key, std::optional<td::Expr> inst) { check_graph(t); return wrap(t, t.t.sort(key, inst)); }, "key"_a, "instance"_a.none())
      .def("ix", [](const PyTable& t, const PyTable& src, td::Expr ptr, bool optional) {
        check_graph(t);
        return wrap(t, t.t.ix(src.t, ptr, optional));
      })
      .def("windowby_reduce", [](const PyTable& t, td::Expr time, const std::string& kind, nb::handle duration,
                                 nb::handle hop, nb::handle origin, nb::handle max_gap, std::optional<td::Expr> inst,
                                 const Outputs& o) {
        check_graph(t);
        td::Window w;
        if (kind == "tumbling") w = td::tumbling(to_value(duration), to_value(origin));
        else if (kind == "sliding") w = td::sliding(to_value(hop), to_value(duration), to_value(origin));
        else if (kind == "session") w = td::session(to_value(max_gap));
        else throw std::invalid_argument("unknown window kind " + kind);
        return wrap(t, t.t.windowby(time, w, inst).reduce(named(o)));
      }, "time"_a, "kind"_a, "duration"_a.none(), "hop"_a.none(), "origin"_a.none(), "max_gap"_a.none(),
         "instance"_a.none(), "outputs"_a);

  // ----- sources and sinks
  m.def("fs_read", [](std::shared_ptr<PyGraph> g, const std::string& path, const std::string& format,
                      const PySchema& schema, const std::string& mode, const std::string& name,
                      const std::vector<std::string>& pk, uint64_t autocommit_ms, bool skip_bad_rows,
                      const std::string& delimiter) {
    auto o = read_options(format, schema, mode, name, pk, autocommit_ms, skip_bad_rows, delimiter);
    return PyTable{g, td::io::fs::read(*g->g, path, o)};
  });
  m.def("s3_read", [](std::shared_ptr<PyGraph> g, const std::string& path, const std::string& format,
                      const PySchema& schema, const std::string& mode, const std::string& name,
                      const std::vector<std::string>& pk, uint64_t autocommit_ms, bool skip_bad_rows,
                      const std::string& delimiter, const td::persistence::AwsS3Settings& s) {
    auto o = read_options(format, schema, mode, name, pk, autocommit_ms, skip_bad_rows, delimiter);
    return PyTable{g, td::io::s3::read(*g->g, path, o, s)};
  });
  m.def("kafka_read", [](std::shared_ptr<PyGraph> g, const std::string& bootstrap, const std::string& topic,
                         const std::string& format, const PySchema& schema, const std::string& name,
                         uint64_t autocommit_ms, const std::vector<std::pair<std::string, std::string>>& settings,
                         const std::string& start_from, int64_t start_timestamp_ms, bool skip_bad_rows,
                         const std::string& key_column, const std::string& headers_column) {
    td::io::kafka::ReadOptions o;
    o.bootstrap_servers = bootstrap;
    o.topic = topic;
    if (format == "raw") o.format = td::io::kafka::Format::kRaw;
    else if (format == "plaintext") o.format = td::io::kafka::Format::kPlaintext;
    else if (format == "json") o.format = td::io::kafka::Format::kJson;
    else if (format == "csv") o.format = td::io::kafka::Format::kCsv;
    else throw std::invalid_argument("pw.io.kafka.read: format must be raw, plaintext, json or csv, not '" + format + "'");
    o.schema = make_schema(schema);
    if (start_from == "earliest") o.start_from = td::io::kafka::StartFrom::kEarliest;
    else if (start_from == "latest") o.start_from = td::io::kafka::StartFrom::kLatest;
    else if (start_from == "timestamp") o.start_from = td::io::kafka::StartFrom::kTimestamp;
    else throw std::invalid_argument("pw.io.kafka.read: start_from must be earliest, latest or timestamp");
    o.start_timestamp_ms = start_timestamp_ms;
    o.name = name;
    o.autocommit_duration_ms = autocommit_ms;
    o.rdkafka_settings = settings;
    o.skip_bad_rows = skip_bad_rows;
    o.key_column = key_column;
    o.headers_column = headers_column;
    return PyTable{g, td::io::kafka::read(*g->g, std::move(o))};
  });
  m.def("kafka_write", [](const PyTable& t, const std::string& bootstrap, const std::string& topic,
                          const std::string& format, const std::string& key_column, const std::string& name,
                          const std::vector<std::pair<std::string, std::string>>& settings) {
    check_graph(t);
    td::io::kafka::WriteOptions o;
    o.bootstrap_servers = bootstrap;
    o.topic = topic;
    if (format == "json") o.format = td::io::kafka::Format::kJson;
    else if (format == "csv") o.format = td::io::kafka::Format::kCsv;
    else throw std::invalid_argument("pw.io.kafka.write: format must be json or csv, not '" + format + "'");
    o.key_column = key_column;
    o.name = name;
    o.rdkafka_settings = settings;
    td::io::kafka::write(t.t, std::move(o));
  });
  m.def("fs_write", [](const PyTable& t, const std::string& path, const std::string& format, const std::string& name) {
    check_graph(t);
    td::io::fs::write(t.t, path, {parse_format(format), name});
  });
  m.def("subscribe", [](const PyTable& t, nb::object on_change, nb::object on_time_end, nb::object on_end,
                        const std::string& name) {
    check_graph(t);
    td::io::SubscribeCallbacks cb;
    auto wrap_err = [](nb::python_error& e, const char* what) {
      std::string w = describe_exception(e);
      remember_error(e);
      throw std::runtime_error(std::string(what) + " raised " + w);
    };
    if (!on_change.is_none()) {
      auto h = std::make_shared<PyCallable>(on_change);
      cb.on_change = [h, wrap_err](const td::Key& key, const td::Row& row, uint64_t time, bool add) {
        nb::gil_scoped_acquire gil;
        try {
          h->fn(PyKey{key}, row_to_tuple(row), time, add);
        } catch (nb::python_error& e) { wrap_err(e, "subscribe on_change"); }
      };
    }
    if (!on_time_end.is_none()) {
      auto h = std::make_shared<PyCallable>(on_time_end);
      cb.on_time_end = [h, wrap_err](uint64_t time) {
        nb::gil_scoped_acquire gil;
        try {
          h->fn(time);
        } catch (nb::python_error& e) { wrap_err(e, "subscribe on_time_end"); }
      };
    }
    if (!on_end.is_none()) {
      auto h = std::make_shared<PyCallable>(on_end);
      cb.on_end = [h, wrap_err]() {
        nb::gil_scoped_acquire gil;
        try {
          h->fn();
        } catch (nb::python_error& e) { wrap_err(e, "subscribe on_end"); }
      };
    }
    td::io::subscribe(t.t, std::move(cb), name);
  }, "table"_a, "on_change"_a.none(), "on_time_end"_a.none(), "on_end"_a.none(), "name"_a);

  nb::class_<td::io::Subject>(m, "Subject")
      .def(nb::new_([]() { return std::make_shared<td::io::Subject>(); }))
      .def("next", [](td::io::Subject& s, nb::handle row) { s.next(to_row(row)); })
      .def("next_with_key", [](td::io::Subject& s, const PyKey& k, nb::handle row) { s.next_with_key(k.key, to_row(row)); })
      .def("remove_with_key", [](td::io::Subject& s, const PyKey& k, nb::handle row) { s.remove_with_key(k.key, to_row(row)); })
      .def("commit", &td::io::Subject::commit, nb::call_guard<nb::gil_scoped_release>())
      .def("close", &td::io::Subject::close, nb::call_guard<nb::gil_scoped_release>());
  m.def("read_subject", [](std::shared_ptr<PyGraph> g, std::shared_ptr<td::io::Subject> s, const PySchema& schema,
                           const std::string& name, std::vector<std::string> pk) {
    return PyTable{g, td::io::read_subject(*g->g, std::move(s), make_schema(schema), name, std::move(pk))};
  });
  m.def("table_from_markdown", [](std::shared_ptr<PyGraph> g, const std::string& text) {
    return PyTable{g, td::debug::table_from_markdown(*g->g, text)};
  });

  // ----- persistence
  nb::class_<td::persistence::AwsS3Settings>(m, "AwsS3Settings")
      .def(nb::new_(&make_s3))
      .def_rw("bucket_name", &td::persistence::AwsS3Settings::bucket_name)
      .def_rw("access_key", &td::persistence::AwsS3Settings::access_key)
      .def_rw("secret_access_key", &td::persistence::AwsS3Settings::secret_access_key)
      .def_rw("with_path_style", &td::persistence::AwsS3Settings::with_path_style)
      .def_rw("region", &td::persistence::AwsS3Settings::region)
      .def_rw("endpoint", &td::persistence::AwsS3Settings::endpoint)
      .def_rw("session_token", &td::persistence::AwsS3Settings::session_token);

  using td::persistence::Backend;
  using td::persistence::SnapshotEvent;
  nb::class_<SnapshotEvent>(m, "SnapshotEvent")
      .def_static("insert", [](const PyKey& k, nb::handle values) { return SnapshotEvent::insert(k.key, to_row(values)); })
      .def_static("delete", [](const PyKey& k, nb::handle values) { return SnapshotEvent::remove(k.key, to_row(values)); })
      .def_static("advance_time", [](uint64_t t, nb::bytes offset) {
        return SnapshotEvent::advance_time(t, std::string(offset.c_str(), offset.size()));
      }, "time"_a, "offset"_a = nb::bytes(""))
      .def_static("finished", &SnapshotEvent::finished);
  nb::class_<Backend>(m, "Backend")
      .def_static("filesystem", &Backend::filesystem)
      .def_static("memory", &Backend::memory)
      .def_static("mock", [](std::map<std::string, std::vector<SnapshotEvent>> ev) { return Backend::mock(std::move(ev)); })
      .def_static("s3", &Backend::s3)
      .def_static("azure", &Backend::azure)
      .def("describe", &Backend::describe);
  m.def("make_config", [](const Backend& meta, const Backend& snap, uint64_t interval, const std::string& access,
                          const std::string& mode, bool cont, uint64_t lock_lease_ms) {
    td::persistence::Config c;
    c.lock_lease_ms = lock_lease_ms;
    c.metadata_storage = meta;
    c.snapshot_storage = snap;
    c.snapshot_interval_ms = interval;
    auto a = td::persistence::parse_snapshot_access(access);
    if (!a) throw std::invalid_argument(a.status().message());
    auto pm = td::persistence::parse_persistence_mode(mode);
    if (!pm) throw std::invalid_argument(pm.status().message());
    c.snapshot_access = *a;
    c.persistence_mode = *pm;
    c.continue_after_replay = cont;
    return c;
  });
  nb::class_<td::persistence::Config>(m, "Config");
  // Set-up helper (tests, scripts): creates a Kafka topic; OK if it exists.
  m.def("_create_kafka_topic", [](const std::string& bootstrap, const std::string& topic, int partitions) {
    td::Status st = td::io::kafka::create_topic(bootstrap, topic, partitions);
    if (!st.is_ok()) throw std::runtime_error(st.to_string());
  });
  // Set-up helper (tests, scripts): creates an Azure container; OK if it exists.
  m.def("_create_azure_container", [](const std::string& account, const std::string& key,
                                      const std::string& container, const std::string& endpoint) {
    td::storage::AzureOptions o;
    o.account = account;
    o.key = key;
    o.container = container;
    o.endpoint = endpoint;
    td::Status st = td::storage::create_azure_container(o);
    if (!st.is_ok()) throw std::runtime_error(st.to_string());
  });

  // ----- running
  nb::class_<RunResult>(m, "RunResult")
      .def_ro("ok", &RunResult::ok)
      .def_ro("code", &RunResult::code)
      .def_ro("message", &RunResult::message);
  m.def("run", [](PyGraph& g, std::optional<td::persistence::Config> cfg, bool handle_signals) {
    return run_graph(g, std::move(cfg), handle_signals);
  }, "graph"_a, "config"_a.none(), "handle_signals"_a = true);
  m.def("compute_changes", [](const PyTable& t) {
    check_graph(t);
    t.graph->ran = true;
    std::vector<td::debug::Change> changes;
    std::string error;
    {
      nb::gil_scoped_release release;
      try {
        changes = td::debug::compute_changes(t.t);
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    if (!error.empty()) {
      nb::object pending = take_pending_error();
      nb::object err = nb::module_::import_("tidemark._errors").attr("EngineError")(error);
      if (!pending.is_none()) PyException_SetCause(err.ptr(), pending.release().ptr());
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(err.ptr())), err.ptr());
      throw nb::python_error();
    }
    nb::list out;
    for (auto& c : changes) out.append(nb::make_tuple(PyKey{c.key}, row_to_tuple(c.row), c.time, c.diff));
    return out;
  });
}
