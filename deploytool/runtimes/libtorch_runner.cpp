// deploytool's libtorch runner: a TorchScript .pt run from C++, as a serving process would run it.
//
//   libtorch_runner MODEL.pt PARENT_PID THREADS INTEROP_THREADS OPTIMIZE
//
// THREADS / INTEROP_THREADS: 0 keeps libtorch's default. OPTIMIZE: 1 applies torch::jit::optimize_for_inference
// after loading, as deploytool's Python torchscript runtime does (a failure falls back to the plain module and
// says so). Once loaded it prints "ready THREADS INTEROP OPTIMIZED [optimize error]", then reads one command a
// line from stdin and answers each on stdout; it ends when stdin closes, on SIGINT/SIGTERM, and when its parent
// dies (PR_SET_PDEATHSIG, and a thread watching getppid()). A command that fails answers "error MESSAGE".
//
//   run REQUEST    REQUEST: a text file, one tensor a line ("in DTYPE NDIM D0 .. Dn-1 PATH": raw little-endian
//                  bytes, C order) and "out PREFIX". The inputs are passed positionally in file order; the
//                  outputs (a tensor, or a tuple/list of tensors, flattened in order) are written to PREFIX<i>.bin.
//                  Answer: "ok N", then N lines "DTYPE NDIM D0 .. Dn-1".
//   time PLAN      PLAN: "protocol WARMUP_RUNS WARMUP_S MIN_RUNS MIN_S MAX_RUNS MAX_S", "samples PATH" and one
//                  "feed REQUEST" a line. Times one forward() at a time with std::chrono::steady_clock, the
//                  protocol of deploytool's measuring/timing.py; the samples (int64 ns) go to PATH.
//                  Answer: "timed WARMUP_RUNS MEASURE_S CAPPED N".
#include <torch/script.h>

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

struct DType {
  const char* name;
  c10::ScalarType type;
};

const DType DTYPES[] = {
    {"float32", torch::kFloat}, {"float64", torch::kDouble}, {"float16", torch::kHalf},
    {"int64", torch::kLong},    {"int32", torch::kInt},      {"int16", torch::kShort},
    {"int8", torch::kChar},     {"uint8", torch::kByte},     {"bool", torch::kBool},
};

c10::ScalarType scalar_type(const std::string& name) {
  for (const auto& d : DTYPES)
    if (name == d.name) return d.type;
  throw std::runtime_error("unsupported input dtype " + name);
}

std::string dtype_name(c10::ScalarType type) {
  for (const auto& d : DTYPES)
    if (type == d.type) return d.name;
  throw std::runtime_error(std::string("unsupported output dtype ") + c10::toString(type));
}

// An exception's message on one line; libtorch's without its C++ backtrace.
std::string message(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  for (auto& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text.substr(0, 2000);
}

// "DTYPE NDIM D0 .. Dn-1" then the rest of the line (a path, which may hold spaces).
torch::Tensor read_tensor(std::istringstream& line) {
  std::string dtype, path;
  int64_t ndim = -1;
  line >> dtype >> ndim;
  if (!line || ndim < 0) throw std::runtime_error("bad tensor line in request");
  std::vector<int64_t> shape(ndim);
  for (auto& d : shape)
    if (!(line >> d) || d < 0) throw std::runtime_error("bad shape in request");
  std::getline(line >> std::ws, path);
  auto tensor = torch::empty(shape, torch::TensorOptions().dtype(scalar_type(dtype)));
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open " + path);
  if (static_cast<size_t>(in.tellg()) != tensor.nbytes())
    throw std::runtime_error(path + ": " + std::to_string(static_cast<int64_t>(in.tellg())) + " bytes, expected " +
                             std::to_string(tensor.nbytes()));
  in.seekg(0);
  in.read(static_cast<char*>(tensor.data_ptr()), static_cast<std::streamsize>(tensor.nbytes()));
  return tensor;
}

struct Request {
  std::vector<c10::IValue> inputs;
  std::string out_prefix;
};

Request read_request(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot open request " + path);
  Request req;
  std::string text;
  while (std::getline(file, text)) {
    std::istringstream line(text);
    std::string kind;
    line >> kind;
    if (kind == "in") {
      req.inputs.emplace_back(read_tensor(line));
    } else if (kind == "out") {
      std::getline(line >> std::ws, req.out_prefix);
    } else if (!kind.empty()) {
      throw std::runtime_error("unknown request line: " + kind);
    }
  }
  return req;
}

// The module's return value as the Python runtime sees it: a tuple or list is its elements, anything else one.
std::vector<torch::Tensor> flatten(const c10::IValue& out) {
  std::vector<c10::IValue> items;
  if (out.isTuple()) {
    items = out.toTupleRef().elements().vec();
  } else if (out.isList()) {
    for (const auto& v : out.toListRef()) items.push_back(v);
  } else {
    items.push_back(out);
  }
  std::vector<torch::Tensor> tensors;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].isTensor())
      throw std::runtime_error("output " + std::to_string(i) + " is a " + items[i].tagKind() + ", not a tensor");
    tensors.push_back(items[i].toTensor());
  }
  return tensors;
}

void run(torch::jit::Module& module, const std::string& request_path) {
  Request req = read_request(request_path);
  std::vector<torch::Tensor> outputs;
  {
    c10::InferenceMode guard;
    outputs = flatten(module.forward(req.inputs));
  }
  std::ostringstream answer;
  answer << "ok " << outputs.size() << "\n";
  for (size_t i = 0; i < outputs.size(); ++i) {
    auto t = outputs[i].contiguous();
    answer << dtype_name(t.scalar_type()) << " " << t.dim();
    for (auto d : t.sizes()) answer << " " << d;
    answer << "\n";
    std::ofstream out(req.out_prefix + std::to_string(i) + ".bin", std::ios::binary);
    out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    if (!out) throw std::runtime_error("cannot write output " + std::to_string(i));
  }
  std::cout << answer.str() << std::flush;
}

void time_calls(torch::jit::Module& module, const std::string& plan_path) {
  std::ifstream file(plan_path);
  if (!file) throw std::runtime_error("cannot open plan " + plan_path);
  int64_t warmup_runs = 0, min_runs = 1, max_runs = 1;
  double warmup_s = 0, min_s = 0, max_s = 0;
  std::string samples_path, text;
  std::vector<std::vector<c10::IValue>> feeds;
  while (std::getline(file, text)) {
    std::istringstream line(text);
    std::string kind;
    line >> kind;
    if (kind == "protocol") {
      line >> warmup_runs >> warmup_s >> min_runs >> min_s >> max_runs >> max_s;
      if (!line) throw std::runtime_error("bad protocol line in plan");
    } else if (kind == "samples") {
      std::getline(line >> std::ws, samples_path);
    } else if (kind == "feed") {
      std::string request;
      std::getline(line >> std::ws, request);
      feeds.push_back(read_request(request).inputs);
    }
  }
  if (feeds.empty() || samples_path.empty()) throw std::runtime_error("plan names no feed or no samples file");
  using clock = std::chrono::steady_clock;
  auto seconds = [](clock::duration d) { return std::chrono::duration<double>(d).count(); };
  c10::InferenceMode guard;
  int64_t i = 0;
  auto t_end = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(warmup_s));
  while (i < warmup_runs || clock::now() < t_end) module.forward(feeds[i++ % feeds.size()]);
  const int64_t warmup = i;
  std::vector<int64_t> samples;
  const auto start = clock::now();
  bool capped = false;
  while (true) {
    const auto t0 = clock::now();
    module.forward(feeds[i++ % feeds.size()]);
    samples.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - t0).count());
    const double elapsed = seconds(clock::now() - start);
    if (static_cast<int64_t>(samples.size()) >= max_runs || elapsed >= max_s) {
      capped = true;
      break;
    }
    if (static_cast<int64_t>(samples.size()) >= min_runs && elapsed >= min_s) break;
  }
  const double measure_s = seconds(clock::now() - start);
  std::ofstream out(samples_path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(samples.data()), static_cast<std::streamsize>(samples.size() * 8));
  out.close();  // flushed and closed before the answer: the reader opens the file as soon as it reads "timed"
  if (!out) throw std::runtime_error("cannot write samples");
  std::cout << "timed " << warmup << " " << measure_s << " " << (capped ? 1 : 0) << " " << samples.size() << "\n"
            << std::flush;
}

// End with the process that started us, whatever we are doing (a forward() can take long).
void end_with_parent(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (getppid() != parent) _exit(3);  // gone before we asked
  std::thread([parent] {
    while (getppid() == parent) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    _exit(3);
  }).detach();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: libtorch_runner MODEL.pt PARENT_PID THREADS INTEROP_THREADS OPTIMIZE\n";
    return 2;
  }
  for (int sig : {SIGINT, SIGTERM, SIGPIPE}) signal(sig, SIG_DFL);  // a parent may have ignored them
  end_with_parent(static_cast<pid_t>(std::stol(argv[2])));
  const int threads = std::stoi(argv[3]), interop = std::stoi(argv[4]);
  const bool optimize = std::string(argv[5]) == "1";
  torch::jit::Module module;
  std::string optimize_error;
  bool optimized = false;
  try {
    if (threads > 0) at::set_num_threads(threads);
    if (interop > 0) at::set_num_interop_threads(interop);
    module = torch::jit::load(argv[1], torch::kCPU);
    module.eval();
    if (optimize) {
      try {
        module = torch::jit::optimize_for_inference(module);
        optimized = true;
      } catch (const std::exception& e) {  // the plain module still runs: fall back and say so
        optimize_error = message(e).substr(0, 200);
      }
    }
  } catch (const std::exception& e) {
    std::cout << "error " << message(e) << std::endl;
    return 1;
  }
  std::cout << "ready " << at::get_num_threads() << " " << at::get_num_interop_threads() << " " << optimized << " "
            << optimize_error << std::endl;
  std::string text;
  while (std::getline(std::cin, text)) {
    std::istringstream line(text);
    std::string command, arg;
    line >> command;
    std::getline(line >> std::ws, arg);
    try {
      if (command == "run") {
        run(module, arg);
      } else if (command == "time") {
        time_calls(module, arg);
      } else {
        throw std::runtime_error("unknown command " + command);
      }
    } catch (const std::exception& e) {
      std::cout << "error " << message(e) << std::endl;
    }
  }
  return 0;
}
