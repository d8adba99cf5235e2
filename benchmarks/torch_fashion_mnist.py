#!/usr/bin/env python3
"""The fashion_mnist main job (examples/fashion_mnist) in PyTorch, for a side-by-side speed
comparison (benchmarks/compare_torch.sh). Same training, decided the same way:

  data     Fashion-MNIST from the four *-ubyte.gz files; the last 5000 training images are the
           validation set (never shuffled), the first 55000 are trained on, reshuffled at every
           epoch's start by the C++ job's own generator: std::shuffle (libstdc++ 12) driven by
           std::mt19937_64(seed * 0x9E3779B97F4A7C15 + 1), reproduced here draw for draw.
           Pixels are uint8 gathered per batch and scaled by 1.0f/255 inside the step (as
           load_batch in mlp.hpp does).
  model    784-256-128-10, ReLU, softmax cross-entropy. He init (normal, variance 2/fan_in),
           zero biases, from std::mt19937_64(seed) through std::normal_distribution<float>
           (libstdc++'s polar method), weights filled in Eigen's column-major order: the very
           weights of the Release build (see "init" below for -march=native builds).
  loss     the sum over the batch divided by the nominal batch (128): the mean for a full
           batch; for an epoch's last, partial batch the C++ scales the mean by n/128
           (trainer.hpp passes the effective batch to forward()), and so does this.
  update   SGD, momentum 0.9, no dampening, no weight decay, no Nesterov: v = 0.9 v + g;
           w -= lr v (frugal::sgd_momentum_update is documented as PyTorch's rule). Batch 128.
  lr       "budget-linear": lr = 0.1 * (1 - p) before every step, p = max(wall used /
           (limit - the room kept for the run's end evaluations), steps / planned steps)
           (policy.hpp's budget_progress and learning_rate, frugal::linear_decay).
  stops    a mirror of frugal::controller's wall-time rules (controller.hpp, forecast.hpp,
           policy.hpp), with the same statistics: step costs over a window of 16 with the
           one-outlier rule, headroom = the spread while fewer than 16 steps are known, epoch
           ends forecast in units of the steps' current rate. Stop before the next step
           would cross the limit; end an epoch early when the rest of it plus the epoch's end
           and the run's end (2 more validations' worth: the 10000-image test) would not fit;
           before the first evaluation is measured, keep room for it from the FLOP formulas
           (x1.5); stop after an evaluation when one more step and epoch end would not fit;
           early stopping on the validation loss (patience 10, min_delta 1e-4, Lightning's
           rules); the final test set in chunks of 512, each only if its share of the test
           forecast still fits.
  clock    starts after the data are loaded and the model and optimizer made, as the C++
           budget does; "step time" is what the C++ "step" scope measures (batch gather and
           scaling, forward, loss, backward, update, the batch's loss and hits), mean over
           every step, partial ones included.

Differences that remain (none changes what a step computes):
  * the controller's cost model keeps per-batch-size statistics and fits lines between sizes;
    here only the 128-sample steps' statistics are used (the C++ forecasts batch 128 from its
    own, always recent, history too: the 88-sample last step of an epoch never feeds it);
  * the first-evaluation reserve uses the step FLOP formula of frugal's shards (--threads
    shards, as the C++ splits a batch per thread); torch does not shard;
  * results differ in the last bits: a different summation order (OpenBLAS vs Eigen GEMM,
    PyTorch's fused kernels), and the C++ native build draws its init with an FMA (GCC contracts
    x*x + y*y under -march=native), so ~13 % of its initial weights differ by about an ulp
    from the Release build's, which is what this script reproduces.

Threads: --threads N sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS before
torch loads (and, for N > 1, OMP_WAIT_POLICY=PASSIVE unless set: see the comment there),
torch.set_num_threads(N), and openblas_set_num_threads(N) on the OpenBLAS torch really
loaded; the summary's "blas" says which library provides the sgemm_ libtorch_cpu calls and how
many threads it runs.

--schedule constant, --budget-seconds 0 and --max-steps N take the clock out of the training,
to check it against the C++ (--schedule constant --budget samples=N*128 --threads 1): the
test loss and accuracy after N = 1, 2, 5, 20, 30 steps agree to the 4 digits the C++ prints;
at 50 the accuracy is one test image apart, and from ~70 steps float rounding differences have
grown (the C++ Release and -march=native builds part ways from each other just as much).

Output: progress on stderr; the last line on stdout is one JSON object (also written to
--json FILE): steps, epochs, step_ms_mean, step_ms_median, wall_used_s, cpu_s, eval_share,
test_accuracy, blas, ...
"""

import argparse
import ctypes
import ctypes.util
import gzip
import json
import math
import os
import re
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-seconds", type=float, default=20.0,
                   help="wall-time limit in seconds, as --budget wall=20s (default 20; 0: no limit, "
                        "the epochs cap ends the run)")
    p.add_argument("--threads", type=int, default=1, help="intra-op and BLAS threads (default 1)")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="the four *-ubyte.gz files")
    p.add_argument("--seed", type=int, default=1, help="weights and shuffling, as the C++ --seed (default 1)")
    p.add_argument("--epochs", type=int, default=100, help="at most N epochs (default 100, as the C++)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--patience", type=int, default=10, help="early stopping (0: off)")
    p.add_argument("--schedule", choices=("budget-linear", "constant"), default="budget-linear",
                   help="constant: for checking the training against the C++ without the clock in it")
    p.add_argument("--max-steps", type=int, default=0,
                   help="stop after N steps, as the C++ --budget samples=N*batch does (no validation then, "
                        "the final test still runs): for checking that both compute the same")
    p.add_argument("--json", metavar="FILE", help="also write the summary to FILE")
    args = p.parse_args(argv)
    if args.threads < 1 or args.batch < 1 or args.epochs < 1 or args.budget_seconds < 0:
        p.error("--threads, --batch and --epochs must be >= 1, --budget-seconds >= 0")
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    # Before torch (and the BLAS it links) is loaded: OpenBLAS and OpenMP size their thread
    # pools from these when the library initialises, and later calls cannot shrink an OpenMP
    # pool that already started more threads.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)
    # With more than one thread, ATen's OpenMP workers (libgomp) spin between parallel regions
    # by default, and the OpenBLAS pthread worker then waits for a core they hold: measured on
    # the 2-core VM, 94 ms a step at 2 threads against 4.6 ms with passive waiting (4.4 ms at
    # 1 thread). Passive unless the caller chose otherwise.
    if ARGS.threads > 1:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402  (after the thread variables, on purpose)

U64 = np.uint64
MASK64 = (1 << 64) - 1
TRAIN_IMAGES_FOR_VALIDATION = 5000
EVAL_CHUNK = 512           # trainer::default_eval_chunk
HIDDEN = (256, 128)
CLASSES = 10
PIXELS = 28 * 28


# ---- data: the IDX files as idx.hpp reads them ----------------------------------------------

def read_idx(path, magic, dims):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    got = int.from_bytes(raw[0:4], "big")
    if got != magic:
        raise SystemExit(f"{path}: not an IDX file of the expected kind (magic {got:#x}, expected {magic:#x})")
    sizes = [int.from_bytes(raw[4 + 4 * d: 8 + 4 * d], "big") for d in range(dims)]
    header = 4 + 4 * dims
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(sizes)):
        raise SystemExit(f"{path}: {data.size} bytes of data, the header announces {int(np.prod(sizes))}")
    return data.reshape(sizes)


def load_fashion_mnist(directory):
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    missing = [n for n in names if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise SystemExit(f"Fashion-MNIST not found in {directory} (missing {', '.join(missing)}): "
                         "sudo apt-get install dataset-fashion-mnist, or --data DIR")
    tr_x = read_idx(os.path.join(directory, names[0]), 0x803, 3).reshape(-1, PIXELS)
    tr_y = read_idx(os.path.join(directory, names[1]), 0x801, 1)
    te_x = read_idx(os.path.join(directory, names[2]), 0x803, 3).reshape(-1, PIXELS)
    te_y = read_idx(os.path.join(directory, names[3]), 0x801, 1)
    return tr_x, tr_y, te_x, te_y


# ---- libstdc++'s random numbers, reproduced -------------------------------------------------

class MT19937_64:
    """std::mt19937_64, output for output (the twist vectorised with numpy in three segments
    that respect which words are already new)."""
    N, M = 312, 156
    A = U64(0xB5026F5AA96619E9)
    UPPER = U64(0xFFFFFFFF80000000)
    LOWER = U64(0x7FFFFFFF)

    def __init__(self, seed):
        mt = [seed & MASK64]
        for i in range(1, self.N):
            prev = mt[-1]
            mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK64)
        self.state = np.array(mt, dtype=np.uint64)
        self.out = np.empty(0, dtype=np.uint64)  # generated, not yet consumed
        self.pos = 0

    def _mix(self, cur, nxt, far):
        y = (cur & self.UPPER) | (nxt & self.LOWER)
        return far ^ (y >> U64(1)) ^ ((y & U64(1)) * self.A)

    def _generate(self):
        x = self.state
        x[0:156] = self._mix(x[0:156], x[1:157], x[156:312])       # all old words
        x[156:311] = self._mix(x[156:311], x[157:312], x[0:155])   # x[k-156] already new
        x[311:312] = self._mix(x[311:312], x[0:1], x[155:156])
        y = x.copy()
        y ^= (y >> U64(29)) & U64(0x5555555555555555)
        y ^= (y << U64(17)) & U64(0x71D67FFFEDA60000)
        y ^= (y << U64(37)) & U64(0xFFF7EEE000000000)
        y ^= y >> U64(43)
        return y

    def peek(self, n):
        """The next n outputs, not consumed."""
        while self.out.size - self.pos < n:
            blocks = [self.out[self.pos:]]
            need = n - (self.out.size - self.pos)
            for _ in range((need + self.N - 1) // self.N):
                blocks.append(self._generate())
            self.out = np.concatenate(blocks)
            self.pos = 0
        return self.out[self.pos:self.pos + n]

    def consume(self, n):
        self.pos += n

    def __call__(self):
        v = int(self.peek(1)[0])
        self.consume(1)
        return v


_LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
_LIBM.logf.restype = ctypes.c_float
_LIBM.logf.argtypes = [ctypes.c_float]


def he_normal(rng, count, fan_in):
    """`count` draws of std::normal_distribution<float>(0, sqrt(2.0f / fan_in)) (a fresh
    distribution, as mlp.hpp makes one per layer), bit for bit as libstdc++ 12 computes them
    without FMA contraction."""
    f32 = np.float32
    pairs_needed = (count + 1) // 2
    out = []
    while pairs_needed > 0:
        attempts = int(pairs_needed / 0.78) + 32
        u64 = rng.peek(2 * attempts)
        # generate_canonical<float, 24>: one 64-bit output, rounded to float, / 2^64.
        u = u64.astype(np.float32) * f32(2.0 ** -64)
        u = np.where(u >= f32(1), np.nextafter(f32(1), f32(0)), u).astype(np.float32)
        # x = float(2.0f * u - 1.0): the subtraction in double, exact, then one rounding.
        v = (2.0 * u.astype(np.float64) - 1.0).astype(np.float32)
        x, y = v[0::2], v[1::2]
        r2 = x * x + y * y                      # float32, each operation rounded
        ok = np.nonzero((r2 <= f32(1)) & (r2 != f32(0)))[0][:pairs_needed]
        used = 2 * (int(ok[-1]) + 1) if len(ok) == pairs_needed else 2 * attempts
        rng.consume(used)
        x, y, r2 = x[ok], y[ok], r2[ok]
        # std::log(float) is glibc's logf: called, not approximated, so the bits agree.
        log_r2 = np.fromiter((_LIBM.logf(float(a)) for a in r2), dtype=np.float32, count=len(r2))
        mult = np.sqrt(f32(-2) * log_r2 / r2).astype(np.float32)
        pair = np.empty(2 * len(ok), dtype=np.float32)
        pair[0::2] = y * mult                   # returned first
        pair[1::2] = x * mult                   # the saved one, returned next
        out.append(pair)
        pairs_needed -= len(ok)
    stddev = np.sqrt(f32(2) / f32(fan_in)).astype(np.float32)
    return (np.concatenate(out)[:count] * stddev).astype(np.float32)


def init_weights(sizes, seed):
    """The weights mlp.hpp draws: w[l] (out x in), filled in column-major order."""
    rng = MT19937_64(seed)
    weights = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        flat = he_normal(rng, fan_in * fan_out, fan_in)
        weights.append(np.ascontiguousarray(flat.reshape(fan_in, fan_out).T))  # (out, in)
    return weights


def _uniform_below(rng, r):
    """uniform_int_distribution{0, r-1}(mt19937_64): Lemire's method as libstdc++ 12 has it."""
    u = rng()
    product = u * r
    low = product & MASK64
    if low < r:
        threshold = ((1 << 64) - r) % r
        while low < threshold:
            product = rng() * r
            low = product & MASK64
    return product >> 64


def shuffle_like_libstdcxx(order, rng):
    """std::shuffle(order.begin(), order.end(), rng) for libstdc++ 12 and a 64-bit engine: for
    an even size one swap from {0, 1}, then swap positions drawn two at a time from one number
    below (i + 1)(i + 2). `order` is a Python list, shuffled in place."""
    n = len(order)
    if n < 2:
        return
    assert n * n < (1 << 64), "libstdc++ takes its other branch for such sizes"
    i = 1
    if n % 2 == 0:
        j = _uniform_below(rng, 2)
        order[1], order[j] = order[j], order[1]
        i = 2
    pairs = (n - i) // 2
    # Vectorised: a rejection (probability below 1e-9 per draw here) consumes another number, so
    # the draws are taken as they would fall and redone one by one if any would be rejected.
    starts = np.arange(i, n, 2, dtype=np.uint64)
    ranges = (starts + U64(1)) * (starts + U64(2))
    u = rng.peek(pairs)
    # (u * r) >> 64 and (u * r) mod 2^64 without 128-bit integers: r < 2^32, so each half's
    # product fits 64 bits, and the low one wraps mod 2^64 as wanted.
    hi32, lo32 = u >> U64(32), u & U64(0xFFFFFFFF)
    a, b = hi32 * ranges, lo32 * ranges
    high = (a + (b >> U64(32))) >> U64(32)
    low = (a << U64(32)) + b
    if np.any(low < ranges):
        thresholds = (U64(0) - ranges) % ranges  # (2^64 - r) mod r
        if np.any(low < thresholds):
            draws = []
            for k in range(pairs):
                r = (i + 2 * k + 1) * (i + 2 * k + 2)
                draws.append(_uniform_below(rng, r))
            high = np.array(draws, dtype=np.uint64)
            u = None
    if u is not None:
        rng.consume(pairs)
    b1 = starts + U64(2)
    first = (high // b1).tolist()
    second = (high % b1).tolist()
    for k in range(pairs):
        p = i + 2 * k
        f = first[k]
        order[p], order[f] = order[f], order[p]
        s = second[k]
        order[p + 1], order[s] = order[s], order[p + 1]


# ---- FLOPs, as the C++ counts them (for the first evaluation's reserve only) -----------------

def forward_flops(sizes, n):
    f = sizes[0] * n                                  # loading and scaling the pixels
    for l in range(len(sizes) - 1):
        f += 2 * sizes[l + 1] * sizes[l] * n + sizes[l + 1] * n
        if l + 2 < len(sizes):
            f += sizes[l + 1] * n                     # ReLU
    c = sizes[-1]
    return f + n * (5 * c + 1 + (c + 1)) + c * n      # softmax cross-entropy, argmax


def backward_flops(sizes, n):
    f = 0
    for l in range(len(sizes) - 1):
        i, o = sizes[l], sizes[l + 1]
        f += 2 * o * n * i + (2 * i * o * n if l > 0 else 0) + o * (n - 1)
        if l > 0:
            f += i * n                                # ReLU backward
    return f


def step_flops(sizes, batch, shards):
    params = sum(sizes[l + 1] * (sizes[l] + 1) for l in range(len(sizes) - 1))
    used = min(shards, batch)
    f = 0
    for k in range(used):
        n = batch // used + (1 if k < batch % used else 0)
        f += forward_flops(sizes, n) + backward_flops(sizes, n) + (sizes[-1] * n if used > 1 else 0)
    return f + (used - 1) * params + 4 * params


# ---- the controller's statistics and wall-time rules ---------------------------------------

class CostStats:
    """frugal::cost_stats: the last `window` costs; high = the largest, leaving out one value
    more than twice every other once 3 later ones (1 after the first ever) show it was a
    one-off; mean, median, spread = high / median - 1."""

    def __init__(self, window=16, outlier_ratio=2.0, settle=3):
        self.window, self.ratio, self.settle = window, outlier_ratio, settle
        self.values = []  # (sequence number, cost), the window's
        self.count = 0
        self.high = self.mean = self.median = self.spread = 0.0

    def add(self, x):
        if not (x >= 0) or not math.isfinite(x):
            x = 0.0
        self.values.append((self.count, x))
        self.count += 1
        if len(self.values) > self.window:
            self.values.pop(0)
        v, v2, v_seq = -1.0, -1.0, None
        for seq, y in self.values:
            if y > v:
                v2, v, v_seq = v, y, seq
            elif y > v2:
                v2 = y
        settle = 1 if v_seq == 0 else self.settle
        excluded = len(self.values) >= 2 and v > self.ratio * v2 and self.count - 1 - v_seq >= settle
        kept = sorted(y for seq, y in self.values if not (excluded and seq == v_seq))
        m = len(kept)
        self.high = v2 if excluded else v
        self.mean = sum(kept) / m
        self.median = kept[m // 2] if m % 2 == 1 else (kept[m // 2 - 1] + kept[m // 2]) / 2
        self.spread = self.high / self.median - 1 if m >= 2 and self.median > 0 else 0.0

    def empty(self):
        return self.count == 0


class WallController:
    """frugal::controller's decisions for one limited resource, the wall (controller.hpp:
    decide_step, end_epoch_if_needed, decide_epoch; policy.hpp: first_evaluation_reserve,
    evaluation_cost, final_test_misfit, budget_progress)."""

    def __init__(self, limit, batch, epoch_samples, run_end_work, patience, eval_flops, test_flops, step_flops_):
        self.limit = limit if limit > 0 else math.inf
        self.batch = batch
        self.epoch_samples = epoch_samples
        self.run_end_work = run_end_work        # test images / validation images
        self.patience = patience
        self.eval_flops, self.test_flops, self.step_flops = eval_flops, test_flops, step_flops_
        self.steps = {}                         # batch size -> CostStats
        self.epoch_end = CostStats()
        self.end_in_rate = CostStats()
        self.epochs = 0
        self.samples_in_epoch = 0
        self.best, self.wait = None, 0
        self.stop_reason = self.stop_kind = None
        self.t0 = time.perf_counter()
        self.used = 0.0                         # the wall at the last checkpoint

    def wall(self):
        return time.perf_counter() - self.t0

    # the forecasts
    def _stats(self):
        s = self.steps.get(self.batch)
        if s is None and self.steps:            # only smaller batches seen: proportional
            b, s = max(self.steps.items())
            scaled = CostStats()
            for seq_value in s.values:
                scaled.add(seq_value[1] * self.batch / b)
            return scaled
        return s

    def step_high(self):
        s = self._stats()
        return s.high if s else 0.0

    def step_scale(self):
        s = self._stats()
        if s is None or s.count >= s.window:
            return 1.0
        return 1.0 + s.spread

    def _rate(self):
        s = self._stats()
        return s.median / self.batch if s else 0.0

    def end_high(self):
        rate = self._rate()
        if not self.end_in_rate.empty() and rate > 0:
            return self.end_in_rate.high * rate
        return self.epoch_end.high

    def end_scale(self):
        s = self._stats()
        step_median = s.median if s else 0.0
        end = self.end_high()
        k = end / step_median if step_median > 0 and end > step_median else 1.0
        end_stats = self.end_in_rate if not self.end_in_rate.empty() else self.epoch_end
        return 1.0 + max((s.spread if s else 0.0) / math.sqrt(k), end_stats.spread)

    def end_reserve(self):
        return self.end_high() * self.end_scale() * (1 + self.run_end_work)

    def _formula(self, flops):
        high = self.step_high()
        return 1.5 * high * flops / self.step_flops if high > 0 and self.step_flops > 0 else 0.0

    def run_end_cost(self):
        """evaluation_cost::of("wall"): an epoch's end and the final test."""
        if self.epochs > 0:
            return self.end_high() * (1 + self.run_end_work)
        return self._formula(self.eval_flops + self.test_flops)

    def final_test_cost(self):
        if self.epochs > 0:
            return self.end_high() * self.run_end_work
        return self._formula(self.test_flops)

    # the checkpoints
    def progress(self, total_steps, planned_steps):
        p = total_steps / planned_steps
        if math.isfinite(self.limit):
            used, room = self.wall(), self.limit - self.run_end_cost()
            p = max(p, (1.0 if used > 0 or room < 0 else 0.0) if room <= 0 else used / room)
        return p

    def end_step(self, n, loss):
        """After a step of n samples: "continue", "end_epoch" or "stop"."""
        now = self.wall()
        self.steps.setdefault(n, CostStats()).add(now - self.used)
        self.used = now
        self.samples_in_epoch += n
        if not math.isfinite(loss):
            return self._stop(f"loss is {loss} at a step", "non_finite")
        if self.used >= self.limit:
            return self._stop("wall: the limit is used up", "exhausted")
        nxt = self.step_high() * self.step_scale()
        if self.used + nxt > self.limit:
            return self._stop(f"wall: {self.used:.3f} s used of {self.limit:g} s, next step forecast {nxt * 1e3:.1f} ms")
        if self.epochs > 0 and not self.epoch_end.empty():
            end = self.end_reserve()
            if self.used + end > self.limit:
                return self._stop(f"wall: {self.used:.3f} s used; the epoch's end and the run's end ({end:.3f} s) "
                                  "would not fit")
            left = 0 if self.samples_in_epoch >= self.epoch_samples else \
                -(-(self.epoch_samples - self.samples_in_epoch) // self.batch)
            if left > 0:
                rest = nxt + (left - 1) * self._stats().mean
                if self.used + nxt + end > self.limit and self.used + rest + end > self.limit:
                    return "end_epoch"
        elif self.epochs == 0:
            # first_evaluation_reserve: the evaluations' cost from the FLOP formulas.
            ev = self.run_end_cost()
            if self.used + (self.step_high() + ev) * self.step_scale() > self.limit:
                return "end_epoch"
        return "continue"

    def end_epoch(self, val_loss):
        now = self.wall()
        cost = now - self.used
        self.used = now
        self.epoch_end.add(cost)
        s, rate = self._stats(), self._rate()
        if s is not None and rate > 0 and s.count >= s.window:
            self.end_in_rate.add(cost / rate)
        self.epochs += 1
        self.samples_in_epoch = 0
        # early stopping (Lightning's rules, min_delta 1e-4, mode min)
        if self.patience > 0:
            if not math.isfinite(val_loss):
                return self._stop(f"val_loss is {val_loss}", "non_finite")
            if self.best is None or val_loss < self.best - 1e-4:
                self.best, self.wait = val_loss, 0
            else:
                self.wait += 1
                if self.wait >= self.patience:
                    return self._stop(f"val_loss did not improve on {self.best:.4f} for {self.wait} evaluations",
                                      "early_stopping")
        if self.used >= self.limit:
            return self._stop("wall: the limit is used up", "exhausted")
        f = self.step_high() * self.step_scale() + self.end_reserve()
        if self.used + f > self.limit:
            return self._stop(f"wall: {self.used:.3f} s used of {self.limit:g} s, one step, an epoch end and the "
                              f"run's end forecast {f:.3f} s")
        return "continue"

    def final_test_fits(self, share, with_headroom):
        used = self.wall()
        scale = self.end_scale() if with_headroom else 1.0
        return used < self.limit and used + self.final_test_cost() * scale * share <= self.limit

    def _stop(self, why, kind="forecast"):
        self.stop_reason, self.stop_kind = why, kind
        return "stop"


# ---- which BLAS torch really calls -------------------------------------------------------------

class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _loaded_libraries():
    paths = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith("/"):
                paths.add(parts[5])
    return paths


def blas_report(torch, threads):
    """Finds the library that provides the sgemm_ libtorch_cpu calls (dlsym from libtorch_cpu's
    handle, then dladdr: the dynamic linker's own answer, after update-alternatives), and, when
    it is OpenBLAS, sets and reads its thread count."""
    info = {"blas_info_built": None, "sgemm_from": None, "openblas": None}
    built = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    info["blas_info_built"] = built.group(1) if built else None  # "generic": libblas.so.3, whichever it is
    libs = _loaded_libraries()
    noload = os.RTLD_NOLOAD | os.RTLD_LAZY
    libc = ctypes.CDLL(None)
    torch_cpu = next((p for p in libs if os.path.basename(p).startswith("libtorch_cpu.so")), None)
    if torch_cpu:
        try:
            handle = ctypes.CDLL(torch_cpu, mode=noload)
            addr = ctypes.cast(handle.sgemm_, ctypes.c_void_p).value
            dl = _DlInfo()
            if libc.dladdr(ctypes.c_void_p(addr), ctypes.byref(dl)):
                info["sgemm_from"] = os.path.realpath(dl.dli_fname.decode())
        except (OSError, AttributeError):
            pass
    openblas = next((p for p in libs if "libopenblas" in os.path.basename(p)), None)
    if openblas:
        ob = ctypes.CDLL(openblas, mode=noload)
        ob.openblas_get_config.restype = ctypes.c_char_p
        ob.openblas_get_corename.restype = ctypes.c_char_p
        ob.openblas_set_num_threads(threads)
        parallel = {0: "sequential", 1: "pthreads", 2: "OpenMP"}.get(ob.openblas_get_parallel(), "?")
        info["openblas"] = {"library": os.path.realpath(openblas),
                            "config": ob.openblas_get_config().decode().strip(),
                            "core": ob.openblas_get_corename().decode(),
                            "parallel": parallel,
                            "threads": ob.openblas_get_num_threads()}
    info["mkl_loaded"] = any("libmkl" in os.path.basename(p) for p in libs)
    ob = info["openblas"]
    via = info["sgemm_from"] or "?"
    info["summary"] = (f"OpenBLAS {ob['config'].split()[1] if ob else '?'} ({ob['parallel']}, core {ob['core']}, "
                       f"{ob['threads']} thread(s)); sgemm_ from {via}") if ob else f"sgemm_ from {via}"
    return info


# ---- the run -------------------------------------------------------------------------------

def main(args):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    blas = blas_report(torch, args.threads)

    load_start = time.perf_counter()
    tr_x, tr_y, te_x, te_y = load_fashion_mnist(args.data)
    total = tr_x.shape[0]
    val_n = min(TRAIN_IMAGES_FOR_VALIDATION, total // 10)
    train_n = total - val_n
    batch = min(args.batch, train_n)
    load_s = time.perf_counter() - load_start
    images = torch.from_numpy(tr_x.copy())                       # uint8, as the C++ keeps them
    labels = torch.from_numpy(tr_y.astype(np.int64))
    test_images = torch.from_numpy(te_x.copy())
    test_labels = torch.from_numpy(te_y.astype(np.int64))
    scale = float(np.float32(1) / np.float32(255))               # 1.0f / 255.0f

    sizes = [PIXELS, *HIDDEN, CLASSES]
    init_start = time.perf_counter()
    weights = init_weights(sizes, args.seed)
    layers = []
    for l, w in enumerate(weights):
        lin = torch.nn.Linear(sizes[l], sizes[l + 1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.zero_()
        layers.append(lin)
        if l + 1 < len(weights):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, dampening=0,
                          weight_decay=0, nesterov=False)
    order = list(range(train_n))
    shuffle_rng = MT19937_64((args.seed * 0x9E3779B97F4A7C15 + 1) & MASK64)
    init_s = time.perf_counter() - init_start
    val_x, val_y = images[train_n:], labels[train_n:]
    lr0 = float(np.float32(args.lr))                             # the C++ option is a float

    print(f"torch_fashion_mnist: {train_n} training, {val_n} validation, {test_images.shape[0]} test images "
          f"(loaded in {load_s:.2f} s, init and generators {init_s:.2f} s); MLP {'-'.join(map(str, sizes))}; "
          f"SGD (momentum {args.momentum:g}), lr {args.lr:g} {args.schedule}; batch {batch}; "
          f"torch {torch.__version__}, {args.threads} thread(s); BLAS: {blas['summary']}", file=sys.stderr)

    def evaluate(x_all, y_all, fits=None):
        """Loss and accuracy over x_all, in chunks of 512; with `fits`, each chunk only if it still
        fits (the result then covers the images evaluated)."""
        loss_sum, correct, seen = 0.0, 0, 0
        with torch.inference_mode():
            for at in range(0, x_all.shape[0], EVAL_CHUNK):
                n = min(EVAL_CHUNK, x_all.shape[0] - at)
                if fits is not None and not fits(n):
                    break
                x = x_all[at:at + n].to(torch.float32).mul_(scale)
                y = y_all[at:at + n]
                logits = model(x)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                correct += int((logits.argmax(1) == y).sum().item())
                seen += n
        return (loss_sum / seen if seen else math.nan), (correct / seen if seen else math.nan), seen

    steps_per_epoch = -(-train_n // batch)
    planned_steps = steps_per_epoch * args.epochs
    ctl = WallController(args.budget_seconds, batch, train_n, run_end_work=te_x.shape[0] / val_n,
                         patience=args.patience,
                         eval_flops=forward_flops(sizes, val_n), test_flops=forward_flops(sizes, te_x.shape[0]),
                         step_flops_=step_flops(sizes, batch, args.threads))
    cpu0 = time.process_time()                                   # the budget starts here
    step_times = []
    eval_s = 0.0
    total_steps = samples = 0
    epoch = 0
    at_epoch_end = False
    stopped = False
    val_loss = val_acc = math.nan
    lr = lr0
    while epoch < args.epochs and not stopped:
        shuffle_like_libstdcxx(order, shuffle_rng)
        order_t = torch.tensor(order, dtype=torch.int64)
        start = 0
        loss_sum, correct = 0.0, 0
        decision = "continue"
        while start < train_n:
            n = min(batch, train_n - start)
            if args.schedule == "budget-linear":
                p = min(max(ctl.progress(total_steps, planned_steps), 0.0), 1.0)
                lr = float(np.float32(lr0 * (1.0 - p)))
            for group in opt.param_groups:
                group["lr"] = lr
            t = time.perf_counter()
            # ---- the step, as the C++ "step" scope measures it ----
            idx = order_t[start:start + n]
            x = images.index_select(0, idx).to(torch.float32).mul_(scale)
            y = labels.index_select(0, idx)
            opt.zero_grad(set_to_none=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y, reduction="sum")
            (loss / batch).backward()                            # mean for 128; n/128 of it for less
            opt.step()
            with torch.no_grad():
                hits = int((logits.argmax(1) == y).sum().item())
            batch_loss = loss.item()
            # ---- end of the step ----
            step_times.append(time.perf_counter() - t)
            correct += hits
            start += n
            total_steps += 1
            samples += n
            loss_sum += batch_loss
            at_epoch_end = False
            decision = ctl.end_step(n, batch_loss / n)
            if args.max_steps and total_steps >= args.max_steps:
                decision = ctl._stop(f"samples: {samples} used of {args.max_steps * batch}", "samples")
            if decision != "continue":
                break
        if decision == "stop":
            break                                                # no evaluation: it would not fit
        t = time.perf_counter()
        val_loss, val_acc, _ = evaluate(val_x, val_y)
        eval_s += time.perf_counter() - t
        decision = ctl.end_epoch(val_loss)
        at_epoch_end = True
        epoch += 1
        print(f"epoch {epoch}  wall {ctl.used:.2f} s  lr {lr:.4g}  loss {loss_sum / max(1, start):.4f}  acc {correct / max(1, start):.4f}  "
              f"val loss {val_loss:.4f}  val acc {val_acc:.4f}", file=sys.stderr)
        stopped = decision == "stop"

    # the final test, in chunks that each must still fit (policy.hpp's final_test_misfit)
    test_acc = test_loss = None
    test_seen = 0
    test_n = te_x.shape[0]
    if total_steps > 0 and ctl.final_test_fits(min(EVAL_CHUNK, test_n) / test_n, not at_epoch_end):
        t = time.perf_counter()
        test_loss, test_acc, test_seen = evaluate(
            test_images, test_labels, fits=lambda k: ctl.final_test_fits(k / test_n, not at_epoch_end))
        eval_s += time.perf_counter() - t
    wall_used = ctl.wall()
    cpu_s = time.process_time() - cpu0

    steps_ms = sorted(s * 1e3 for s in step_times)
    m = len(steps_ms)
    median = (steps_ms[m // 2] if m % 2 else (steps_ms[m // 2 - 1] + steps_ms[m // 2]) / 2) if m else None
    stop = ctl.stop_reason or (f"done: all {args.epochs} epochs" if epoch >= args.epochs else "stopped")
    print(f"stopped: {stop}\nafter {samples / train_n:.2f} epochs ({total_steps} steps); test accuracy "
          f"{'not measured' if test_acc is None else f'{test_acc:.4f}'}"
          + (f" (first {test_seen} of {test_n} images)" if test_acc is not None and test_seen < test_n else ""),
          file=sys.stderr)
    summary = {
        "impl": "torch",
        "torch": torch.__version__,
        "threads": args.threads,
        "budget_s": args.budget_seconds,
        "steps": total_steps,
        "epochs": round(samples / train_n, 4),
        "epoch_ends": ctl.epochs,
        "step_ms_mean": round(sum(steps_ms) / m, 4) if m else None,
        "step_ms_median": round(median, 4) if m else None,
        "first_steps_ms": [round(x * 1e3, 3) for x in step_times[:5]],  # the warm-up
        "wall_used_s": round(wall_used, 4),
        "cpu_s": round(cpu_s, 4),
        "cpu_process_s": round(time.process_time(), 4),
        "eval_s": round(eval_s, 4),
        "eval_share": round(eval_s / wall_used, 4) if wall_used > 0 else None,
        "val_loss": None if math.isnan(val_loss) else round(val_loss, 6),
        "test_loss": None if test_loss is None else round(test_loss, 6),
        "test_accuracy": test_acc,
        "test_images": test_seen,
        "final_lr": lr,
        "stop": stop,
        "stop_kind": ctl.stop_kind or ("epochs" if epoch >= args.epochs else None),
        "blas": blas["summary"],
        "blas_detail": blas,
    }
    line = json.dumps(summary)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
