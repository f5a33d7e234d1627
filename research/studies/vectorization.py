r"""A Python loop over word vectors vs one matrix product.

"Matrices are awesome": the deck times softmax scores computed one word
vector at a time against one product with all vectors side by side (1000
loops, best of 3: 639 µs per loop; 10000 loops, best of 3: 53.8 µs per
loop). Its code is not in the text; the classic version is

  W = np.random.rand(5, 300)                       # C x d
  wordvectors_list = [np.random.rand(300, 1) for _ in range(500)]
  wordvectors_one_matrix = np.random.rand(300, 500)
  [W.dot(v) for v in wordvectors_list]             # loop
  W.dot(wordvectors_one_matrix)                    # one C x N product

`run` times that in NumPy (float64, as np.random.rand gives) and in JAX
(float32, jitted), then does the same for the scores of our window model
(research.formulas.model.class_scores on window vectors looked up from L) over
the dev windows of a dataset, with its vocabulary and word vectors (the other
weights at their initial values: timing does not depend on training): a Python
loop over a jitted per-window function, `jax.lax.map` (the loop compiled),
`jax.vmap` and one batched call.

Timing follows %timeit: one warm-up call, then the number of loops is doubled
until one measurement takes `min_seconds`, and `repeats` such measurements
are taken; the best and the median per loop are reported. The measurements
of one table are interleaved (round r measures every version once), so a
spell of load from other processes hits them all alike. JAX calls are timed
up to `block_until_ready`. Compilation is reported on its own (first call
minus the best steady-state call) and is not in the per-loop times.
`write_outputs` writes `run`'s results (results.json) and the report
(report.md: `report_sections`).
"""

import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from research import setup as setup_lib
from research.formulas import model as model_lib

MODEL_VOCAB = 20000  # rows of L for random inputs (about CoNLL-2003's)
MODEL_CLASSES = 9  # O and B-/I- of CoNLL's four types
LOOP = 'jax loop (jit per item)'  # a jitted call per vector / window
DECK_US = {'loop': 639.0, 'matrix': 53.8}  # the deck's per-loop times

NP_NONLINEARITIES = {
  'tanh': np.tanh,
  'relu': lambda z: np.maximum(z, 0.0),
  'sigmoid': lambda z: 1.0 / (1.0 + np.exp(-z)),
  'hardtanh': lambda z: np.clip(z, -1.0, 1.0),
}


def size_loops(fn, min_seconds):
  """Loops per measurement: doubled from 1 until they take min_seconds."""
  number = 1
  while True:
    t = time.perf_counter()
    for _ in range(number):
      fn()
    if time.perf_counter() - t >= min_seconds or number >= 1 << 20:
      return number
    number *= 2


def measure(fn, number):
  """Seconds per loop of `number` back-to-back calls."""
  t = time.perf_counter()
  for _ in range(number):
    fn()
  return (time.perf_counter() - t) / number


def timeit(fns, repeats, min_seconds):
  """Times callables like %timeit, interleaving their measurements.

  Each fn gets one warm-up call and its own number of loops (see
  `size_loops`); then `repeats` rounds each measure every fn once, so that
  all of them see the same spells of load from other processes.

  Args:
    fns: {name: fn}; fn() returns once its work is done (block inside it).
    repeats: measurements R per fn.
    min_seconds: the least time of one measurement.

  Returns:
    {name: {'loops', 'repeats', 'best_s', 'median_s'}} (seconds per loop).
  """
  number = {}
  for name, fn in fns.items():
    fn()  # warm-up
    number[name] = size_loops(fn, min_seconds)
  per_loop = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      per_loop[name].append(measure(fn, number[name]))
  return {
    name: {
      'loops': number[name],
      'repeats': repeats,
      'best_s': min(t),
      'median_s': statistics.median(t),
    }
    for name, t in per_loop.items()
  }


def first_call_seconds(fn):
  """Wall time of one call (with compilation when fn is a fresh jit)."""
  t = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t


def fmt_time(seconds):
  """'639 µs'-style text with three significant digits."""
  for unit, scale in (('s', 1.0), ('ms', 1e-3), ('µs', 1e-6), ('ns', 1e-9)):
    if seconds >= scale or unit == 'ns':
      return f'{seconds / scale:.3g} {unit}'
  return f'{seconds:.3g} s'


# The deck's example: scores W v for N word vectors v.


def deck_inputs(num_classes, dim, num_vectors, seed=0):
  """W [C, d], the vectors as a list of [d, 1] and as one [d, N] (float64)."""
  rng = np.random.default_rng(seed)
  W_Cxd = rng.random((num_classes, dim))
  vectors = [rng.random((dim, 1)) for _ in range(num_vectors)]
  return W_Cxd, vectors, np.hstack(vectors)


def deck_versions(W_Cxd, vectors):
  """The deck's scores computed several ways.

  Args:
    W_Cxd: softmax weights.
    vectors: N word vectors, each [d, 1].

  Returns:
    {name: (library, run, scores, compile_fn)}: run() computes the scores and
    waits for them (what is timed), scores() returns them as one [C, N]
    numpy array, compile_fn() is a first call (None for NumPy). The JAX
    versions hold fresh jitted functions, so their first call compiles.
  """
  M_dxN = np.hstack(vectors)
  W = jnp.asarray(W_Cxd, jnp.float32)
  vs = [jnp.asarray(v, jnp.float32) for v in vectors]
  V_Nxdx1 = jnp.stack(vs)
  M = jnp.asarray(M_dxN, jnp.float32)
  one = jax.jit(lambda W, v: W @ v)
  matrix = jax.jit(lambda W, M: W @ M)
  vmapped = jax.jit(jax.vmap(lambda W, v: W @ v, in_axes=(None, 0)))
  mapped = jax.jit(lambda W, V: jax.lax.map(lambda v: W @ v, V))

  def columns(out):
    return np.hstack(list(out)) if isinstance(out, list) else np.asarray(out)

  versions = {
    'numpy loop': ('numpy', lambda: [W_Cxd.dot(v) for v in vectors], None),
    'numpy matrix': ('numpy', lambda: W_Cxd.dot(M_dxN), None),
    LOOP: (
      'jax',
      lambda: jax.block_until_ready([one(W, v) for v in vs]),
      lambda: one(W, vs[0]),
    ),
    'jax lax.map': (
      'jax',
      lambda: mapped(W, V_Nxdx1).block_until_ready(),
      lambda: mapped(W, V_Nxdx1),
    ),
    'jax vmap': (
      'jax',
      lambda: vmapped(W, V_Nxdx1).block_until_ready(),
      lambda: vmapped(W, V_Nxdx1),
    ),
    'jax matrix': (
      'jax',
      lambda: matrix(W, M).block_until_ready(),
      lambda: matrix(W, M),
    ),
  }
  out = {}
  for name, (lib, run, first) in versions.items():
    if name in ('jax lax.map', 'jax vmap'):
      scores = lambda run=run: np.asarray(run())[:, :, 0].T  # [N,C,1]->[C,N]
    else:
      scores = lambda run=run: columns(run())
    out[name] = (lib, run, scores, first)
  return out


# The window model: class scores f [N, C] of N windows.


def model_inputs(
  model_cfg,
  num_windows,
  vocab_size=MODEL_VOCAB,
  num_classes=MODEL_CLASSES,
  embed_dim=50,
  seed=0,
):
  """Random parameters of the window model and random windows."""
  params = model_lib.init_params(
    jax.random.key(seed),
    model_cfg,
    vocab_size=vocab_size,
    num_classes=num_classes,
    embed_dim=embed_dim,
  )
  if model_cfg.model == 'softmax':  # zeros at init: make the scores nonzero
    params['W'] = 0.01 * jax.random.normal(
      jax.random.key(seed + 1), params['W'].shape
    )
  rng = np.random.default_rng(seed)
  K = 2 * model_cfg.window + 1
  words_NxK = rng.integers(0, vocab_size, (num_windows, K), dtype=np.int32)
  casing_NxK = rng.integers(1, 8, (num_windows, K), dtype=np.int32)
  return params, words_NxK, casing_NxK


def dataset_inputs(ds, model_cfg, max_windows=0, seed=0):
  """Initial parameters on ds's word vectors, and its first dev windows."""
  params = setup_lib.init_params(ds, model_cfg, seed)
  if model_cfg.model == 'softmax':  # zeros at init: make the scores nonzero
    params['W'] = 0.01 * jax.random.normal(
      jax.random.key(seed + 1), params['W'].shape
    )
  dev = ds.windows['dev']
  n = min(max_windows or len(dev.labels), len(dev.labels))
  return params, dev.words[:n], dev.casing[:n]


def model_scores(params, words_NxK, casing_NxK, model_cfg):
  """f [N, C]: look the windows up in L and L_case, then class_scores."""
  x_NxD = model_lib.window_vectors(
    params['L'], params['L_case'], words_NxK, casing_NxK
  )
  return model_lib.class_scores(params, x_NxD, model_cfg)


def numpy_model_scores(params, words_NxK, casing_NxK, model_cfg):
  """The same forward pass in NumPy (float32 parameters)."""
  N = len(words_NxK)
  x_NxD = np.concatenate(
    [params['L'][words_NxK], params['L_case'][casing_NxK]], axis=-1
  ).reshape(N, -1)
  if model_cfg.model == 'softmax':
    return x_NxD @ params['W'].T + params['c']
  a_NxH = NP_NONLINEARITIES[model_cfg.nonlinearity](
    x_NxD @ params['V'].T + params['b']
  )
  return a_NxH @ params['W'].T + params['c']


def model_versions(params, words_NxK, casing_NxK, model_cfg):
  """The window model's scores computed several ways (see deck_versions).

  The loops call a function on one window ([1, K] ids) at a time; the
  per-window id arrays are made (and, for JAX, put on the device) beforehand,
  like the deck's list of word vectors.

  Returns:
    {name: (library, run, scores, compile_fn)}; scores() gives [N, C].
  """
  np_params = {k: np.asarray(v) for k, v in params.items()}
  rows = [
    (words_NxK[i : i + 1], casing_NxK[i : i + 1]) for i in range(len(words_NxK))
  ]
  dev_rows = [(jnp.asarray(w), jnp.asarray(c)) for w, c in rows]
  words, casing = jnp.asarray(words_NxK), jnp.asarray(casing_NxK)

  def per_window(p, w_K, c_K):
    return model_scores(p, w_K[None], c_K[None], model_cfg)[0]

  one = jax.jit(lambda p, w, c: model_scores(p, w, c, model_cfg))
  batched = jax.jit(lambda p, w, c: model_scores(p, w, c, model_cfg))
  vmapped = jax.jit(jax.vmap(per_window, in_axes=(None, 0, 0)))
  mapped = jax.jit(
    lambda p, w, c: jax.lax.map(lambda wc: per_window(p, *wc), (w, c))
  )

  def np_loop():
    return [numpy_model_scores(np_params, w, c, model_cfg) for w, c in rows]

  versions = {
    'numpy loop': ('numpy', np_loop, None),
    'numpy matrix': (
      'numpy',
      lambda: numpy_model_scores(np_params, words_NxK, casing_NxK, model_cfg),
      None,
    ),
    LOOP: (
      'jax',
      lambda: jax.block_until_ready([one(params, w, c) for w, c in dev_rows]),
      lambda: one(params, *dev_rows[0]),
    ),
    'jax lax.map': (
      'jax',
      lambda: mapped(params, words, casing).block_until_ready(),
      lambda: mapped(params, words, casing),
    ),
    'jax vmap': (
      'jax',
      lambda: vmapped(params, words, casing).block_until_ready(),
      lambda: vmapped(params, words, casing),
    ),
    'jax matrix': (
      'jax',
      lambda: batched(params, words, casing).block_until_ready(),
      lambda: batched(params, words, casing),
    ),
  }
  out = {}
  for name, (lib, run, first) in versions.items():

    def scores(run=run):
      f = run()
      return np.concatenate(f) if isinstance(f, list) else np.asarray(f)

    out[name] = (lib, run, scores, first)
  return out


def bench(versions, num_items, repeats, min_seconds, log):
  """Times every version; returns result rows (ratios against 'matrix')."""
  first_s = {
    name: first_call_seconds(first)
    for name, (_, _, _, first) in versions.items()
    if first is not None
  }
  times = timeit(
    {name: v[1] for name, v in versions.items()}, repeats, min_seconds
  )
  rows = []
  for name, (lib, _, _, _) in versions.items():
    t = times[name]
    # For the loop, the compiled unit is one per-item call.
    unit_s = t['best_s'] / num_items if name == LOOP else t['best_s']
    compile_s = max(0.0, first_s[name] - unit_s) if name in first_s else None
    rows.append({'version': name, 'library': lib, **t, 'compile_s': compile_s})
    log(
      f'  {name:28s} {t["loops"]} loops, best of {t["repeats"]}: '
      f'{fmt_time(t["best_s"])} per loop (median '
      f'{fmt_time(t["median_s"])})'
      + (f'; compile {compile_s:.3f}s' if compile_s is not None else '')
    )
  for row in rows:
    ref = next(
      r
      for r in rows
      if r['library'] == row['library'] and r['version'].endswith('matrix')
    )
    row['vs_matrix'] = row['best_s'] / ref['best_s']
  return rows


def check_same(versions, rtol, atol):
  """Max |difference| of every version's scores from the NumPy matrix's."""
  ref = versions['numpy matrix'][2]()
  diffs = {}
  for name, (_, _, scores, _) in versions.items():
    got = scores()
    if got.shape != ref.shape:
      raise AssertionError(f'{name}: shape {got.shape} != {ref.shape}')
    diffs[name] = float(np.max(np.abs(got - ref)))
    if not np.allclose(got, ref, rtol=rtol, atol=atol):
      raise AssertionError(
        f'{name}: scores differ from numpy matrix by up to {diffs[name]:g}'
      )
  return diffs


def environment():
  """What the timings ran on: versions, device, CPUs, BLAS threads."""
  return {
    'jax': jax.__version__,
    'numpy': np.__version__,
    'device': str(jax.devices()[0]),
    'cpus': os.cpu_count(),
    'machine': platform.machine(),
    'python': platform.python_version(),
    'openblas_num_threads': os.environ.get('OPENBLAS_NUM_THREADS', 'unset'),
  }


def check_same_float32(versions):
  """`check_same` (rtol, atol 1e-4) with full float32 matrix products: the
  versions are timed with the backend's default precision (a GPU's is
  TF32, 10 mantissa bits, which no two summation orders agree on to 1e-4)
  and compared with the precision they are written for."""
  with jax.default_matmul_precision('float32'):
    return check_same(versions, rtol=1e-4, atol=1e-4)


def _time_deck(C, d, N, repeats, min_seconds, log):
  """Times the deck's example: W_Cxd against N word vectors [d, 1].

  Returns:
    run's 'deck' entry: the sizes, `bench`'s rows and `check_same`'s
    'max_abs_diff'.
  """
  log(f'deck example: W [{C}, {d}] times {N} word vectors [{d}, 1]')
  W, vectors, _ = deck_inputs(C, d, N)
  deck = deck_versions(W, vectors)
  deck_rows = bench(deck, N, repeats, min_seconds, log)  # first calls compile
  deck_diffs = check_same_float32(deck)
  return {
    'classes': C,
    'dim': d,
    'vectors': N,
    'rows': deck_rows,
    'max_abs_diff': deck_diffs,
  }


def _time_model(
  ds, model_cfg, model_windows, data_dir, repeats, min_seconds, log
):
  """Times the window model's scores of `model_windows` dev windows of `ds`
  (0: all).

  Returns:
    run's 'model' entry: the configuration and sizes, `bench`'s rows and
    `check_same`'s 'max_abs_diff'.
  """
  K = 2 * model_cfg.window + 1
  params, words, casing = dataset_inputs(ds, model_cfg, model_windows)
  windows, vocab_size, classes = len(words), len(ds.vocab), len(ds.tags)
  embed_dim = ds.L_init.shape[1]
  log(
    f'window model: {model_cfg.model} ({model_cfg.nonlinearity}, hidden '
    f'{model_cfg.hidden}), {windows:,} dev windows of {K} words, d='
    f'{embed_dim}, {classes} classes'
  )
  model = model_versions(params, words, casing, model_cfg)
  model_rows = bench(model, windows, repeats, min_seconds, log)
  model_diffs = check_same_float32(model)
  return {
    'config': model_cfg._asdict(),
    'windows': windows,
    'data_dir': data_dir,
    'vocab': vocab_size,
    'classes': classes,
    'embed_dim': embed_dim,
    'rows': model_rows,
    'max_abs_diff': model_diffs,
  }


def run(
  ds,
  model_cfg,
  *,
  deck_classes=5,
  deck_dim=300,
  deck_vectors=500,
  model_windows=0,
  repeats=5,
  min_seconds=0.2,
  data_dir='',
  log=print,
):
  """Times the deck's example and the window model's scores, loop vs matrix.

  Args:
    ds: a research.data.dataset.Dataset (its dev windows, vocabulary and
      vectors).
    model_cfg: the window model (research.formulas.model.ModelConfig).
    deck_classes, deck_dim, deck_vectors: C, d and N of the deck's example.
    model_windows: dev windows scored by the window model (0: all).
    repeats: measurements R per version.
    min_seconds: the least time of one measurement.
    data_dir: where ds was read from (a label in the results).
    log: progress line printer.

  Returns:
    A JSON-able dict: 'environment', 'deck_reference_us', 'deck' and
    'model' (their sizes, 'rows' of `bench` and 'max_abs_diff' of
    `check_same`), 'timing' (settings and the 1-minute load average before
    and after).
  """
  env = environment()
  load = [os.getloadavg()[0]]
  log(
    f'JAX {env["jax"]} on {env["device"]}, NumPy {env["numpy"]}, '
    f'{env["cpus"]} CPUs'
  )
  deck = _time_deck(
    deck_classes, deck_dim, deck_vectors, repeats, min_seconds, log
  )
  model = _time_model(
    ds, model_cfg, model_windows, data_dir, repeats, min_seconds, log
  )
  load.append(os.getloadavg()[0])
  return {
    'environment': env,
    'deck_reference_us': DECK_US,
    'deck': deck,
    'model': model,
    'timing': {
      'repeats': repeats,
      'min_seconds': min_seconds,
      'load_average_1min': load,
    },
  }
