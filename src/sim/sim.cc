// Hawk NPU pipe simulator.
//
// Input is an NPU program as flat arrays (built by hawk.runtime.codegen):
//   nodes   int64 [N, 4]  (type, a, b, body_len) in pre-order; a LOOP repeats its body `a`
//                         times, a REGION allocates buffers region_bufs[a : a + b] (each
//                         entry moves double-buffered ones to their next slot), an INSTR
//                         issues instruction `a`; body_len counts the nodes of the body.
//   instrs  int64 [I, 11] (pipe, cost class, kind, p0, p1, p2, p3, reads at, n reads,
//                         writes at, n writes) with reads/writes indexing `accesses`.
//   costs   double [C, 5] (latency, throughput, burst, overhead, factor) per cost class,
//                         all taken from the HardwareSpec.
//   slots   int64 [B]     slots per buffer (2 = double-buffered).
// Pipes are in-order: an instruction starts when its pipe is free and the buffer slots it
// reads (RAW) or overwrites (WAR, WAW) are done. Results go to `out`:
//   out[0] total cycles, out[1] dynamic instructions, out[2 + p] busy cycles of pipe p.
// Everything is integer cycles and deterministic.

#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/reflection/registry.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace hawk {
namespace sim {

namespace ffi = tvm::ffi;

enum NodeType : int64_t { kLoop = 0, kRegion = 1, kInstr = 2 };
enum Kind : int64_t { kDma = 0, kMatrix = 1, kVector = 2, kScalar = 3 };
constexpr int64_t kNodeCols = 4;
constexpr int64_t kInstrCols = 11;
constexpr int64_t kCostCols = 5;

// Cycles of one static instruction; mirrored by hawk.runtime.timing.duration.
int64_t Duration(const int64_t* in, const double* cost) {
  const double latency = cost[0], throughput = cost[1], burst = cost[2];
  const double overhead = cost[3], factor = cost[4];
  const double p0 = static_cast<double>(in[3]), p1 = static_cast<double>(in[4]);
  const double p2 = static_cast<double>(in[5]), p3 = static_cast<double>(in[6]);
  switch (in[2]) {
    case kDma: {  // p0 runs of p1 bytes; each run is charged in whole bursts
      const double charged = std::ceil(p1 / burst) * burst;
      return static_cast<int64_t>(latency + std::ceil(p0 * charged / throughput));
    }
    case kMatrix:  // p0 matrix instructions in p1 issues
      return static_cast<int64_t>(overhead * p1 + std::ceil(p0 / throughput));
    case kVector:  // p0 repeats per op, p1 plain ops, p2 transcendental ops, p3 issues
      return static_cast<int64_t>(overhead * p3 * (p1 + p2) + std::ceil(p1 * p0 / throughput) +
                                  std::ceil(p2 * p0 * factor / throughput));
    case kScalar:  // p0 elements, p1 plain ops, p2 transcendental ops per element
      return static_cast<int64_t>(std::ceil(p0 * (p1 + p2 * factor) / throughput));
  }
  TVM_FFI_THROW(ValueError) << "unknown instruction kind " << in[2];
}

template <typename T>
const T* Data(const ffi::TensorView& t, int64_t cols, const char* name) {
  if (t.ndim() == 0 || (cols > 0 && (t.ndim() != 2 || t.size(1) != cols))) {
    TVM_FFI_THROW(ValueError) << name << " must have " << cols << " columns";
  }
  return static_cast<const T*>(t.data_ptr());
}

class Simulator {
 public:
  Simulator(ffi::TensorView nodes, ffi::TensorView region_bufs, ffi::TensorView instrs,
            ffi::TensorView accesses, ffi::TensorView costs, ffi::TensorView slots,
            int64_t num_pipes, int64_t max_instructions)
      : nodes_(Data<int64_t>(nodes, kNodeCols, "nodes")),
        num_nodes_(nodes.size(0)),
        region_bufs_(static_cast<const int64_t*>(region_bufs.data_ptr())),
        accesses_(static_cast<const int64_t*>(accesses.data_ptr())),
        max_instructions_(max_instructions),
        pipe_free_(num_pipes, 0),
        busy_(num_pipes, 0) {
    const int64_t* in = Data<int64_t>(instrs, kInstrCols, "instrs");
    const double* cost = Data<double>(costs, kCostCols, "costs");
    const int64_t num_costs = costs.size(0);
    for (int64_t i = 0; i < instrs.size(0); ++i) {
      const int64_t* row = in + i * kInstrCols;
      if (row[0] < 0 || row[0] >= num_pipes || row[1] < 0 || row[1] >= num_costs) {
        TVM_FFI_THROW(ValueError) << "instruction " << i << " names a bad pipe or cost class";
      }
      instrs_.push_back({row[0], Duration(row, cost + row[1] * kCostCols), row[7], row[8], row[9],
                         row[10]});
    }
    const int64_t* s = static_cast<const int64_t*>(slots.data_ptr());
    int64_t offset = 0;
    for (int64_t b = 0; b < slots.size(0); ++b) {
      offset_.push_back(offset);
      slots_.push_back(std::max<int64_t>(1, s[b]));
      offset += slots_.back();
    }
    generation_.assign(slots_.size(), 0);
    current_.assign(slots_.size(), 0);
    write_end_.assign(offset, 0);
    read_end_.assign(offset, 0);
  }

  void Run() { Walk(0, num_nodes_); }

  void Write(double* out) const {
    out[0] = static_cast<double>(makespan_);
    out[1] = static_cast<double>(count_);
    for (size_t p = 0; p < busy_.size(); ++p) out[2 + p] = static_cast<double>(busy_[p]);
  }

 private:
  struct Instr {
    int64_t pipe, duration, reads_at, num_reads, writes_at, num_writes;
  };

  void Walk(int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      const int64_t* node = nodes_ + i * kNodeCols;
      const int64_t body_end = i + 1 + node[3];
      switch (node[0]) {
        case kLoop:
          for (int64_t it = 0; it < node[1]; ++it) Walk(i + 1, body_end);
          break;
        case kRegion:
          for (int64_t k = node[1]; k < node[1] + node[2]; ++k) {
            const int64_t b = region_bufs_[k];
            current_[b] = ++generation_[b] % slots_[b];
          }
          Walk(i + 1, body_end);
          break;
        case kInstr:
          Issue(instrs_[node[1]]);
          break;
        default:
          TVM_FFI_THROW(ValueError) << "node " << i << " has unknown type " << node[0];
      }
      i = body_end;
    }
  }

  void Issue(const Instr& ins) {
    if (++count_ > max_instructions_) {
      TVM_FFI_THROW(RuntimeError) << "program exceeds " << max_instructions_ << " instructions";
    }
    int64_t start = pipe_free_[ins.pipe];
    for (int64_t k = 0; k < ins.num_reads; ++k) {
      start = std::max(start, write_end_[Slot(accesses_[ins.reads_at + k])]);
    }
    for (int64_t k = 0; k < ins.num_writes; ++k) {
      const int64_t s = Slot(accesses_[ins.writes_at + k]);
      start = std::max({start, read_end_[s], write_end_[s]});
    }
    const int64_t end = start + ins.duration;
    pipe_free_[ins.pipe] = end;
    busy_[ins.pipe] += ins.duration;
    makespan_ = std::max(makespan_, end);
    for (int64_t k = 0; k < ins.num_reads; ++k) {
      int64_t& r = read_end_[Slot(accesses_[ins.reads_at + k])];
      r = std::max(r, end);
    }
    for (int64_t k = 0; k < ins.num_writes; ++k) {
      write_end_[Slot(accesses_[ins.writes_at + k])] = end;
    }
  }

  int64_t Slot(int64_t buffer) const { return offset_[buffer] + current_[buffer]; }

  const int64_t* nodes_;
  int64_t num_nodes_;
  const int64_t* region_bufs_;
  const int64_t* accesses_;
  int64_t max_instructions_;
  std::vector<Instr> instrs_;
  std::vector<int64_t> offset_, slots_, generation_, current_, write_end_, read_end_;
  std::vector<int64_t> pipe_free_, busy_;
  int64_t makespan_ = 0, count_ = 0;
};

void Simulate(ffi::TensorView nodes, ffi::TensorView region_bufs, ffi::TensorView instrs,
              ffi::TensorView accesses, ffi::TensorView costs, ffi::TensorView slots,
              int64_t num_pipes, int64_t max_instructions, ffi::TensorView out) {
  if (out.numel() < 2 + num_pipes) {
    TVM_FFI_THROW(ValueError) << "out needs " << 2 + num_pipes << " entries";
  }
  Simulator sim(nodes, region_bufs, instrs, accesses, costs, slots, num_pipes, max_instructions);
  sim.Run();
  sim.Write(static_cast<double*>(out.data_ptr()));
}

TVM_FFI_STATIC_INIT_BLOCK() {
  namespace refl = tvm::ffi::reflection;
  refl::GlobalDef().def("hawk.sim.simulate", Simulate);
}

}  // namespace sim
}  // namespace hawk
