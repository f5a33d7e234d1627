"""The loop-vs-matrix study's report: tables, summary, report.md.

The measurements are research/studies/vectorization.py; this module renders
what its `run` returned.
"""

from research import workdir as workdir_lib
from research.reports import render
from research.studies import vectorization as study


def table(rows):
  """The markdown table of `bench`'s rows."""
  headers = [
    'version',
    'loops × best of R',
    'best per loop',
    'median per loop',
    '× matrix (same library)',
    'compile (s)',
  ]
  body = [
    [
      r['version'],
      f'{r["loops"]} × best of {r["repeats"]}',
      study.fmt_time(r['best_s']),
      study.fmt_time(r['median_s']),
      f'{r["vs_matrix"]:.1f}',
      '—' if r['compile_s'] is None else f'{r["compile_s"]:.3f}',
    ]
    for r in rows
  ]
  return render.markdown_table(headers, body)


COMPILE_NOTE = (
  'Per-loop times exclude compilation: each JAX version is a fresh jit; '
  'its first call (tracing + compiling + one run) minus its best steady '
  'call is the compile column (for the per-item loop, minus one per-item '
  'call). NumPy has nothing to compile.'
)


def summary(results):
  """The closing paragraph: the loop / matrix ratios against the deck's."""
  env, load = results['environment'], results['timing']['load_average_1min']
  deck_rows = results['deck']['rows']
  ratio = {
    lib: next(
      r['vs_matrix']
      for r in deck_rows
      if r['library'] == lib and 'loop' in r['version']
    )
    for lib in ('numpy', 'jax')
  }
  deck_ratio = study.DECK_US['loop'] / study.DECK_US['matrix']
  deck_diff = max(results['deck']['max_abs_diff'].values())
  model_diff = max(results['model']['max_abs_diff'].values())
  return (
    f'The deck: loop 639 µs, matrix 53.8 µs per loop (the loop takes '
    f'{deck_ratio:.1f}× the time). Here the NumPy loop takes '
    f'{ratio["numpy"]:.1f}× the time of the NumPy matrix product and the '
    f'JAX loop of jitted calls {ratio["jax"]:.1f}× the time of one jitted '
    f'product (load average {load[0]:.1f} before, {load[1]:.1f} after, '
    f'on {env["cpus"]} CPUs: other processes share the machine when it is '
    'above the CPU count; OPENBLAS_NUM_THREADS='
    f'{env["openblas_num_threads"]}). Scores agree across versions (max '
    f'|difference| from the NumPy product: deck {deck_diff:.2g}, window '
    f'model {model_diff:.2g}; NumPy runs the deck example in float64, JAX '
    'in float32).'
  )


def report_sections(results):
  """[(heading, markdown body)] of report.md: setup, the two tables and
  the summary."""
  env, timing = results['environment'], results['timing']
  deck, model = results['deck'], results['model']
  C, d, N = deck['classes'], deck['dim'], deck['vectors']
  cfg = model['config']
  return [
    (
      'Setup',
      f'JAX {env["jax"]} on {env["device"]} ({env["cpus"]} CPUs, '
      f'{env["machine"]}), NumPy {env["numpy"]}. Timing like '
      '%timeit: warm-up, loops per measurement doubled until one '
      f'measurement takes {timing["min_seconds"]:g} s, best and '
      f'median of {timing["repeats"]} measurements, interleaved '
      'across the versions of a table; JAX results are waited for '
      f'with `block_until_ready`. {COMPILE_NOTE}',
    ),
    (f'Deck example: W [{C}, {d}] · {N} vectors [{d}, 1]', table(deck['rows'])),
    (
      f'Window model: {model["windows"]:,} dev windows of '
      f'`{model["data_dir"]}`, {cfg["model"]} ({cfg["nonlinearity"]}, '
      f'H={cfg["hidden"]}), K={2 * cfg["window"] + 1}, '
      f'd={model["embed_dim"]}, C={model["classes"]}',
      table(model['rows']),
    ),
    ('Summary', summary(results)),
  ]


def write_outputs(workdir, results):
  """results.json and report.md in workdir; returns the text to print (the
  two tables and the summary)."""
  workdir_lib.write_json(workdir / 'results.json', results)
  sections = report_sections(results)
  render.write_report(workdir / 'report.md', 'Loop vs matrix', sections)
  return '\n\n'.join(body for _, body in sections[1:])
