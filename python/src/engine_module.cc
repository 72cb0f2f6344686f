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

#include "tidemark/tidemark.h"

namespace nb = nanobind;
using namespace nb::literals;
namespace tm = tidemark;

namespace {

// ---------------------------------------------------------------------------------------------
// Values

nb::object g_datetime_mod, g_timedelta, g_datetime, g_utc, g_epoch_naive, g_epoch_utc, g_json_cls,
    g_pointer_cls;

struct PyKey {
  tm::Key key;
};

void ensure_modules() {
  if (g_datetime_mod.is_valid()) return;
  g_datetime_mod = nb::module_::import_("datetime");
  g_timedelta = g_datetime_mod.attr("timedelta");
  g_datetime = g_datetime_mod.attr("datetime");
  g_utc = g_datetime_mod.attr("timezone").attr("utc");
  g_epoch_naive = g_datetime(1970, 1, 1);
  g_epoch_utc = g_datetime(1970, 1, 1, "tzinfo"_a = g_utc);
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

tm::Value to_value(nb::handle o) {
  if (o.is_none()) return tm::Value();
  if (PyBool_Check(o.ptr())) return tm::Value(o.ptr() == Py_True);
  if (PyLong_CheckExact(o.ptr()) || PyLong_Check(o.ptr())) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o.ptr(), &overflow);
    if (overflow) throw std::invalid_argument("integer out of the 64-bit range: " + nb::cast<std::string>(nb::repr(o)));
    return tm::Value(static_cast<int64_t>(v));
  }
  if (PyFloat_Check(o.ptr())) return tm::Value(PyFloat_AsDouble(o.ptr()));
  if (PyUnicode_Check(o.ptr())) {
    Py_ssize_t n = 0;
    const char* s = PyUnicode_AsUTF8AndSize(o.ptr(), &n);
    if (!s) throw nb::python_error();
    return tm::Value(std::string(s, static_cast<size_t>(n)));
  }
  if (PyBytes_Check(o.ptr())) {
    return tm::Value::bytes(std::string(PyBytes_AsString(o.ptr()), static_cast<size_t>(PyBytes_Size(o.ptr()))));
  }
  if (nb::isinstance<PyKey>(o)) return tm::Value(nb::cast<PyKey&>(o).key);
  if (PyTuple_Check(o.ptr()) || PyList_Check(o.ptr())) {
    std::vector<tm::Value> items;
    for (nb::handle h : o) items.push_back(to_value(h));
    return tm::Value::tuple(std::move(items));
  }
  ensure_modules();
  if (nb::isinstance(o, g_datetime)) {
    if (o.attr("tzinfo").is_none()) return tm::Value(tm::DateTimeNaive{td_to_ns(o - g_epoch_naive)});
    return tm::Value(tm::DateTimeUtc{td_to_ns(o - g_epoch_utc)});
  }
  if (nb::isinstance(o, g_timedelta)) return tm::Value(tm::Duration{td_to_ns(o)});
  if (g_json_cls.is_valid() && nb::isinstance(o, g_json_cls)) {
    nb::object text = nb::module_::import_("json").attr("dumps")(o.attr("value"));
    return tm::Value::json(nb::cast<std::string>(text));
  }
  if (PyDict_Check(o.ptr())) {
    nb::object text = nb::module_::import_("json").attr("dumps")(o);
    return tm::Value::json(nb::cast<std::string>(text));
  }
  // numpy scalars and other numbers
  if (nb::hasattr(o, "__index__")) return to_value(nb::steal(PyNumber_Index(o.ptr())));
  if (nb::hasattr(o, "__float__")) return tm::Value(nb::cast<double>(o.attr("__float__")()));
  throw std::invalid_argument("cannot convert a Python " + nb::cast<std::string>(o.type().attr("__name__")) +
                              " to a Tidemark value: " + nb::cast<std::string>(nb::repr(o)));
}

nb::object from_value(const tm::Value& v) {
  switch (v.type()) {
    case tm::DType::kAny:
    case tm::DType::kNone: return nb::none();
    case tm::DType::kBool: return nb::bool_(v.as_bool());
    case tm::DType::kInt: return nb::int_(v.as_int());
    case tm::DType::kFloat: return nb::float_(v.as_float());
    case tm::DType::kString: {
      const std::string& s = v.as_string();
      return nb::steal(PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace"));
    }
    case tm::DType::kBytes: return nb::bytes(v.as_bytes().data(), v.as_bytes().size());
    case tm::DType::kPointer: return nb::cast(PyKey{v.as_pointer()});
    case tm::DType::kTuple: {
      const auto& items = v.as_tuple();
      nb::object t = nb::steal(PyTuple_New(static_cast<Py_ssize_t>(items.size())));
      for (size_t i = 0; i < items.size(); ++i)
        PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), from_value(items[i]).release().ptr());
      return t;
    }
    case tm::DType::kDateTimeNaive: ensure_modules(); return g_epoch_naive + ns_to_td(v.as_datetime_naive());
    case tm::DType::kDateTimeUtc: ensure_modules(); return g_epoch_utc + ns_to_td(v.as_datetime_utc());
    case tm::DType::kDuration: ensure_modules(); return ns_to_td(v.as_duration());
    case tm::DType::kJson: {
      nb::object parsed = nb::module_::import_("json").attr("loads")(v.as_json());
      if (g_json_cls.is_valid()) return g_json_cls(parsed);
      return parsed;
    }
  }
  return nb::none();
}

nb::tuple row_to_tuple(const tm::Row& row) {
  nb::object t = nb::steal(PyTuple_New(static_cast<Py_ssize_t>(row.size())));
  for (size_t i = 0; i < row.size(); ++i)
    PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), from_value(row[i]).release().ptr());
  return nb::borrow<nb::tuple>(t);
}

tm::Row to_row(nb::handle seq) {
  tm::Row row;
  for (nb::handle h : seq) row.push_back(to_value(h));
  return row;
}

tm::DType parse_dtype(const std::string& s) {
  static const std::pair<const char*, tm::DType> kNames[] = {
      {"any", tm::DType::kAny},       {"none", tm::DType::kNone},         {"bool", tm::DType::kBool},
      {"int", tm::DType::kInt},       {"float", tm::DType::kFloat},       {"str", tm::DType::kString},
      {"bytes", tm::DType::kBytes},   {"pointer", tm::DType::kPointer},   {"tuple", tm::DType::kTuple},
      {"datetime_naive", tm::DType::kDateTimeNaive}, {"datetime_utc", tm::DType::kDateTimeUtc},
      {"duration", tm::DType::kDuration}, {"json", tm::DType::kJson}};
  for (auto& [n, d] : kNames)
    if (s == n) return d;
  throw std::invalid_argument("unknown type name '" + s + "'");
}

tm::Type make_type(const std::string& dtype, bool optional) { return tm::Type{parse_dtype(dtype), optional}; }

// Schema from [(name, dtype, optional), ...]
using PySchema = std::vector<std::tuple<std::string, std::string, bool>>;
tm::Schema make_schema(const PySchema& cols) {
  std::vector<tm::Column> out;
  for (auto& [n, d, o] : cols) out.push_back({n, make_type(d, o)});
  return tm::Schema(std::move(out));
}
PySchema schema_to_py(const tm::Schema& s) {
  PySchema out;
  for (auto& c : s.columns()) out.emplace_back(c.name, tm::dtype_name(c.type.base), c.type.optional);
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

std::string describe_args(const std::vector<tm::Value>& args) {
  std::string s = "(";
  for (size_t i = 0; i < args.size(); ++i) {
    if (i) s += ", ";
    s += args[i].type() == tm::DType::kString ? "'" + args[i].to_string() + "'" : args[i].to_string();
  }
  return s + ")";
}

tm::UserFunction make_udf(nb::object fn, std::string label) {
  auto holder = std::make_shared<PyCallable>(std::move(fn));
  return [holder, label](const std::vector<tm::Value>& args) -> tm::Value {
    nb::gil_scoped_acquire gil;
    try {
      nb::object t = nb::steal(PyTuple_New(static_cast<Py_ssize_t>(args.size())));
      for (size_t i = 0; i < args.size(); ++i)
        PyTuple_SET_ITEM(t.ptr(), static_cast<Py_ssize_t>(i), from_value(args[i]).release().ptr());
      nb::object r = nb::steal(PyObject_CallObject(holder->fn.ptr(), t.ptr()));
      if (!r.is_valid()) throw nb::python_error();
      return to_value(r);
    } catch (nb::python_error& e) {
      std::string what = e.what();
      // First line of the Python message: "ZeroDivisionError: division by zero"
      std::string first = what.substr(0, what.find('\n'));
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
  std::unique_ptr<tm::Graph> g = std::make_unique<tm::Graph>();
  bool ran = false;
  // Subjects and sinks keep Python objects; they live as long as the graph.
};

struct PyTable {
  std::shared_ptr<PyGraph> graph;
  tm::Table t;
};

using Outputs = std::vector<std::pair<std::string, tm::Expr>>;
std::vector<tm::NamedExpr> named(const Outputs& o) {
  std::vector<tm::NamedExpr> out;
  for (auto& [n, e] : o) out.push_back({n, e});
  return out;
}

void check_graph(const PyTable& t) {
  if (t.graph->ran) throw std::invalid_argument("this table belongs to a graph that has already been run; build the pipeline again");
}

PyTable wrap(const PyTable& like, tm::Table t) { return PyTable{like.graph, t}; }

tm::io::Format parse_format(const std::string& f) {
  if (f == "csv") return tm::io::Format::kCsv;
  if (f == "json" || f == "jsonlines") return tm::io::Format::kJsonLines;
  if (f == "plaintext") return tm::io::Format::kPlaintext;
  if (f == "binary") return tm::io::Format::kBinary;
  throw std::invalid_argument("unknown format '" + f + "' (csv, json, plaintext or binary)");
}

tm::io::fs::ReadOptions read_options(const std::string& format, const PySchema& schema, const std::string& mode,
                                     const std::string& name, const std::vector<std::string>& pk,
                                     uint64_t autocommit_ms, bool skip_bad_rows, const std::string& delimiter) {
  tm::io::fs::ReadOptions o;
  o.format = parse_format(format);
  o.schema = make_schema(schema);
  if (mode == "static") o.mode = tm::io::Mode::kStatic;
  else if (mode == "streaming") o.mode = tm::io::Mode::kStreaming;
  else throw std::invalid_argument("mode must be 'static' or 'streaming', not '" + mode + "'");
  o.name = name;
  o.primary_key = pk;
  o.autocommit_duration_ms = autocommit_ms;
  o.skip_bad_rows = skip_bad_rows;
  if (delimiter.size() != 1) throw std::invalid_argument("csv delimiter must be one character");
  o.csv_delimiter = delimiter[0];
  return o;
}

tm::persistence::AwsS3Settings make_s3(const std::string& bucket, const std::string& access_key,
                                       const std::string& secret, bool path_style, const std::string& region,
                                       const std::string& endpoint, const std::string& token) {
  tm::persistence::AwsS3Settings s;
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

RunResult run_graph(PyGraph& g, std::optional<tm::persistence::Config> cfg, bool handle_signals) {
  if (g.ran) throw std::invalid_argument("this graph has already been run");
  g.ran = true;
  tm::RunOptions opts;
  opts.persistence_config = std::move(cfg);
  opts.handle_signals = handle_signals;
  tm::Status st;
  {
    nb::gil_scoped_release release;
    st = tm::run(*g.g, opts);
  }
  return RunResult{st.is_ok(), tm::status_code_name(st.code()), st.message()};
}

}  // namespace

NB_MODULE(_engine, m) {
  m.doc() = "Tidemark engine binding (use `import tidemark as pw`).";

  nb::exception<tm::GraphError>(m, "GraphError", PyExc_ValueError);

  nb::class_<PyKey>(m, "Pointer")
      .def("__repr__", [](const PyKey& k) { return "^" + k.key.to_string(); })
      .def("__str__", [](const PyKey& k) { return "^" + k.key.to_string(); })
      .def("__eq__", [](const PyKey& a, nb::handle b) {
        return nb::isinstance<PyKey>(b) && a.key == nb::cast<PyKey&>(b).key;
      })
      .def("__lt__", [](const PyKey& a, const PyKey& b) { return a.key < b.key; })
      .def("__hash__", [](const PyKey& k) { return static_cast<Py_ssize_t>(tm::KeyHash{}(k.key) >> 1); })
      .def_prop_ro("lo", [](const PyKey& k) { return k.key.lo; })
      .def_prop_ro("hi", [](const PyKey& k) { return k.key.hi; });
  m.def("key_from_values", [](nb::handle values) { return PyKey{tm::key_from_values(to_row(values))}; });
  m.def("_set_classes", [](nb::object json_cls) { g_json_cls = json_cls; });
  m.def("_roundtrip", [](nb::handle v) { return from_value(to_value(v)); });
  m.def("_take_pending_error", &take_pending_error);

  // ----- expressions
  nb::class_<tm::Expr>(m, "Expr");
  m.def("lit", [](nb::handle v) { return tm::lit(to_value(v)); });
  m.def("col", &tm::col);
  m.def("left", &tm::left);
  m.def("right", &tm::right);
  m.def("id", &tm::id);
  m.def("left_id", &tm::left_id);
  m.def("right_id", &tm::right_id);
  m.def("binop", [](const std::string& op, tm::Expr a, tm::Expr b) -> tm::Expr {
    if (op == "+") return a + b;
    if (op == "-") return a - b;
    if (op == "*") return a * b;
    if (op == "/") return a / b;
    if (op == "//") return tm::floordiv(a, b);
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
  m.def("neg", [](tm::Expr a) { return -a; });
  m.def("not_", [](tm::Expr a) { return !a; });
  m.def("if_else", &tm::if_else);
  m.def("coalesce", &tm::coalesce);
  m.def("is_none", &tm::is_none);
  m.def("is_not_none", &tm::is_not_none);
  m.def("cast", [](tm::Expr a, const std::string& to) { return tm::cast(a, parse_dtype(to)); });
  m.def("make_tuple", &tm::make_tuple);
  m.def("get", &tm::get);
  m.def("str_lower", &tm::str::lower);
  m.def("str_upper", &tm::str::upper);
  m.def("str_len", &tm::str::len);
  m.def("str_strip", &tm::str::strip);
  m.def("str_contains", &tm::str::contains);
  m.def("str_startswith", &tm::str::startswith);
  m.def("str_endswith", &tm::str::endswith);
  m.def("str_replace", &tm::str::replace);
  m.def("str_split", [](tm::Expr s, std::optional<tm::Expr> sep) { return sep ? tm::str::split(s, *sep) : tm::str::split(s); });
  m.def("str_slice", &tm::str::slice);
  m.def("apply", [](nb::object fn, std::vector<tm::Expr> args, const std::string& dtype, bool optional,
                    bool deterministic, std::string label) {
    return tm::apply(make_udf(std::move(fn), std::move(label)), std::move(args), make_type(dtype, optional), deterministic);
  });
  m.def("apply_cached", [](nb::object fn, std::vector<tm::Expr> args, const std::string& dtype, bool optional,
                           const std::string& cache_name, uint64_t size_limit, std::string label) {
    return tm::apply(make_udf(std::move(fn), std::move(label)), std::move(args), make_type(dtype, optional),
                     tm::UdfCache{cache_name, size_limit});
  });
  m.def("reducer", [](const std::string& name, std::optional<tm::Expr> e) -> tm::Expr {
    namespace r = tm::reducers;
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
  });

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
      .def("filter", [](const PyTable& t, tm::Expr p) { check_graph(t); return wrap(t, t.t.filter(p)); })
      .def("groupby_reduce", [](const PyTable& t, std::vector<std::string> by, const Outputs& o) {
        check_graph(t);
        return wrap(t, t.t.groupby(std::move(by)).reduce(named(o)));
      })
      .def("reduce", [](const PyTable& t, const Outputs& o) { check_graph(t); return wrap(t, t.t.reduce(named(o))); })
      .def("join_select", [](const PyTable& t, const PyTable& other, std::vector<std::pair<std::string, std::string>> on,
                             const std::string& mode, const Outputs& o) {
        check_graph(t);
        tm::JoinMode jm = mode == "left" ? tm::JoinMode::kLeft : mode == "right" ? tm::JoinMode::kRight
                        : mode == "outer" ? tm::JoinMode::kOuter : tm::JoinMode::kInner;
        return wrap(t, t.t.join(other.t, std::move(on), jm).select(named(o)));
      })
      .def("concat", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.concat(o.t)); })
      .def("update_rows", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.update_rows(o.t)); })
      .def("update_cells", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.update_cells(o.t)); })
      .def("difference", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.difference(o.t)); })
      .def("intersect", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.intersect(o.t)); })
      .def("restrict", [](const PyTable& t, const PyTable& o) { check_graph(t); return wrap(t, t.t.restrict(o.t)); })
      .def("deduplicate", [](const PyTable& t, tm::Expr value, nb::object acceptor, std::optional<tm::Expr> instance,
                             const std::string& name) {
        check_graph(t);
        tm::DeduplicateOptions o;
        o.value = value;
        if (!acceptor.is_none()) {
          auto holder = std::make_shared<PyCallable>(acceptor);
          o.acceptor = [holder](const tm::Value& nv, const tm::Value& ov) -> bool {
            nb::gil_scoped_acquire gil;
            try {
              return nb::cast<bool>(holder->fn(from_value(nv), from_value(ov)));
            } catch (nb::python_error& e) {
              std::string what = e.what();
              remember_error(e);
              throw std::runtime_error("deduplicate acceptor raised " + what.substr(0, what.find('\n')));
            }
          };
        } else {
          o.acceptor = [](const tm::Value&, const tm::Value&) { return true; };
        }
        o.instance = instance;
        o.name = name;
        return wrap(t, t.t.deduplicate(std::move(o)));
      })
      .def("flatten", [](const PyTable& t, const std::string& c) { check_graph(t); return wrap(t, t.t.flatten(c)); })
      .def("sort", [](const PyTable& t, tm::Expr key, std::optional<tm::Expr> inst) { check_graph(t); return wrap(t, t.t.sort(key, inst)); })
      .def("ix", [](const PyTable& t, const PyTable& src, tm::Expr ptr, bool optional) {
        check_graph(t);
        return wrap(t, t.t.ix(src.t, ptr, optional));
      })
      .def("windowby_reduce", [](const PyTable& t, tm::Expr time, const std::string& kind, nb::handle duration,
                                 nb::handle hop, nb::handle origin, nb::handle max_gap, std::optional<tm::Expr> inst,
                                 const Outputs& o) {
        check_graph(t);
        tm::Window w;
        if (kind == "tumbling") w = tm::tumbling(to_value(duration), to_value(origin));
        else if (kind == "sliding") w = tm::sliding(to_value(hop), to_value(duration), to_value(origin));
        else if (kind == "session") w = tm::session(to_value(max_gap));
        else throw std::invalid_argument("unknown window kind " + kind);
        return wrap(t, t.t.windowby(time, w, inst).reduce(named(o)));
      });

  // ----- sources and sinks
  m.def("fs_read", [](std::shared_ptr<PyGraph> g, const std::string& path, const std::string& format,
                      const PySchema& schema, const std::string& mode, const std::string& name,
                      const std::vector<std::string>& pk, uint64_t autocommit_ms, bool skip_bad_rows,
                      const std::string& delimiter) {
    auto o = read_options(format, schema, mode, name, pk, autocommit_ms, skip_bad_rows, delimiter);
    return PyTable{g, tm::io::fs::read(*g->g, path, o)};
  });
  m.def("s3_read", [](std::shared_ptr<PyGraph> g, const std::string& path, const std::string& format,
                      const PySchema& schema, const std::string& mode, const std::string& name,
                      const std::vector<std::string>& pk, uint64_t autocommit_ms, bool skip_bad_rows,
                      const std::string& delimiter, const tm::persistence::AwsS3Settings& s) {
    auto o = read_options(format, schema, mode, name, pk, autocommit_ms, skip_bad_rows, delimiter);
    return PyTable{g, tm::io::s3::read(*g->g, path, o, s)};
  });
  m.def("fs_write", [](const PyTable& t, const std::string& path, const std::string& format, const std::string& name) {
    check_graph(t);
    tm::io::fs::write(t.t, path, {parse_format(format), name});
  });
  m.def("subscribe", [](const PyTable& t, nb::object on_change, nb::object on_time_end, nb::object on_end,
                        const std::string& name) {
    check_graph(t);
    tm::io::SubscribeCallbacks cb;
    auto wrap_err = [](nb::python_error& e, const char* what) {
      std::string w = e.what();
      remember_error(e);
      throw std::runtime_error(std::string(what) + " raised " + w.substr(0, w.find('\n')));
    };
    if (!on_change.is_none()) {
      auto h = std::make_shared<PyCallable>(on_change);
      cb.on_change = [h, wrap_err](const tm::Key& key, const tm::Row& row, uint64_t time, bool add) {
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
    tm::io::subscribe(t.t, std::move(cb), name);
  });

  nb::class_<tm::io::Subject>(m, "Subject")
      .def(nb::new_([]() { return std::make_shared<tm::io::Subject>(); }))
      .def("next", [](tm::io::Subject& s, nb::handle row) { s.next(to_row(row)); })
      .def("next_with_key", [](tm::io::Subject& s, const PyKey& k, nb::handle row) { s.next_with_key(k.key, to_row(row)); })
      .def("remove_with_key", [](tm::io::Subject& s, const PyKey& k, nb::handle row) { s.remove_with_key(k.key, to_row(row)); })
      .def("commit", &tm::io::Subject::commit, nb::call_guard<nb::gil_scoped_release>())
      .def("close", &tm::io::Subject::close, nb::call_guard<nb::gil_scoped_release>());
  m.def("read_subject", [](std::shared_ptr<PyGraph> g, std::shared_ptr<tm::io::Subject> s, const PySchema& schema,
                           const std::string& name, std::vector<std::string> pk) {
    return PyTable{g, tm::io::read_subject(*g->g, std::move(s), make_schema(schema), name, std::move(pk))};
  });
  m.def("table_from_markdown", [](std::shared_ptr<PyGraph> g, const std::string& text) {
    return PyTable{g, tm::debug::table_from_markdown(*g->g, text)};
  });

  // ----- persistence
  nb::class_<tm::persistence::AwsS3Settings>(m, "AwsS3Settings")
      .def(nb::new_(&make_s3))
      .def_rw("bucket_name", &tm::persistence::AwsS3Settings::bucket_name)
      .def_rw("access_key", &tm::persistence::AwsS3Settings::access_key)
      .def_rw("secret_access_key", &tm::persistence::AwsS3Settings::secret_access_key)
      .def_rw("with_path_style", &tm::persistence::AwsS3Settings::with_path_style)
      .def_rw("region", &tm::persistence::AwsS3Settings::region)
      .def_rw("endpoint", &tm::persistence::AwsS3Settings::endpoint)
      .def_rw("session_token", &tm::persistence::AwsS3Settings::session_token);

  using tm::persistence::Backend;
  using tm::persistence::SnapshotEvent;
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
                          const std::string& mode, bool cont) {
    tm::persistence::Config c;
    c.metadata_storage = meta;
    c.snapshot_storage = snap;
    c.snapshot_interval_ms = interval;
    auto a = tm::persistence::parse_snapshot_access(access);
    if (!a) throw std::invalid_argument(a.status().message());
    auto pm = tm::persistence::parse_persistence_mode(mode);
    if (!pm) throw std::invalid_argument(pm.status().message());
    c.snapshot_access = *a;
    c.persistence_mode = *pm;
    c.continue_after_replay = cont;
    return c;
  });
  nb::class_<tm::persistence::Config>(m, "Config");

  // ----- running
  nb::class_<RunResult>(m, "RunResult")
      .def_ro("ok", &RunResult::ok)
      .def_ro("code", &RunResult::code)
      .def_ro("message", &RunResult::message);
  m.def("run", [](PyGraph& g, std::optional<tm::persistence::Config> cfg, bool handle_signals) {
    return run_graph(g, std::move(cfg), handle_signals);
  }, "graph"_a, "config"_a.none(), "handle_signals"_a = true);
  m.def("compute_changes", [](const PyTable& t) {
    check_graph(t);
    t.graph->ran = true;
    std::vector<tm::debug::Change> changes;
    std::string error;
    {
      nb::gil_scoped_release release;
      try {
        changes = tm::debug::compute_changes(t.t);
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
