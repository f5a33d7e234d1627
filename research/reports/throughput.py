"""The throughput benchmark's report: summary, table by batch size, plot.

What is measured is research/studies/throughput.py; this module renders what
its `run` returned.
"""

from research import workdir as workdir_lib
from research.reports import render

TABLE_HEADERS = [
  'vocab',
  'batch',
  'windows/s',
  'GFLOP/s',
  '% of peak',
  'matmuls alone, windows/s (% of peak)',
  'step time in matmuls',
]

READING_THE_TABLE = (
  'windows/s and GFLOP/s are those of the whole '
  'training step (gather, forward, backward, loss, sparse row update, '
  'Adam). "Matmuls alone" times only the step\'s matrix products (the '
  'FLOPs counted) at the same batch size, so it is the ceiling for this '
  'model on this machine; "step time in matmuls" is their share of the '
  'step.'
)


def _table_row(r):
  """One run's row of the table by batch size ('—' where the matmuls were
  not timed alone)."""
  return [
    f'{r["vocab_size"]:,}',
    r['batch_size'],
    f'{r["windows_per_sec"]:,.0f}',
    f'{r["gflops"]:.1f}',
    f'{100 * r["fraction_of_peak"]:.0f}%',
  ] + (
    [
      f'{r["matmuls_only_windows_per_sec"]:,.0f} '
      f'({100 * r["matmuls_only_fraction_of_peak"]:.0f}%)',
      f'{100 * r["windows_per_sec"] / r["matmuls_only_windows_per_sec"]:.0f}%',
    ]
    if 'matmuls_only_windows_per_sec' in r
    else ['—', '—']
  )


def _sweep_rows(out):
  """The summary rows of the stacked-sweep measurements."""
  S = out['sweep']['configs']
  return [
    [
      f'{S}-config stacked sweep time / one config (training)',
      f'{out["sweep"]["train_ratio"]:.2f}x',
    ],
    [
      f"{S} configs' FLOPs at the matmul peak / one config's measured time "
      '(the least the ratio above can be)',
      f'{out["sweep"]["least_ratio_at_matmul_peak"]:.2f}x',
    ],
    [
      f'{S}-config stacked program, compile seconds (once per sweep)',
      f'{out["sweep"]["many_compile_seconds"]:.1f}',
    ],
  ] + (
    [
      [
        f'{S}-config stack, full vocabulary '
        f'({out["sweep"]["full_vocab"]:,}) time / data vocabulary '
        f'({out["sweep"]["data_vocab"]:,}) time',
        f'{out["sweep"]["full_vocab_ratio"]:.2f}x',
      ]
    ]
    if 'full_vocab_ratio' in out['sweep']
    else []
  )


def _sentence_rows(out):
  """The summary rows of the sentence-level measurement (none without
  one)."""
  if 'sentence' not in out:
    return []
  return [
    [
      f'{out["sentence"]["name"]}: words/s over packed sentences (rows '
      f'of {out["sentence"]["row_length"]}, '
      f'{out["sentence"]["rows_per_step"]} per step)',
      f'{out["sentence"]["words_per_sec"]:,.0f}',
    ],
    [
      'default model at batch 256 in the same rounds, windows/s',
      f'{out["sentence"]["default_windows_per_sec"]:,.0f}',
    ],
  ]


def _summary(out, r256, best, full):
  """The summary table (markdown): batch 256 against its baselines, the
  best batch, the full vocabulary, the sweep and the sentence level."""
  return render.markdown_table(
    ['measure', 'value'],
    [
      ['matmul peak (GFLOP/s)', f'{out["matmul_peak_gflops"]:.1f}'],
      ['batch 256, windows/s', f'{r256["windows_per_sec"]:,.0f}'],
      [
        'naive baseline at batch 256, windows/s',
        f'{r256["naive_windows_per_sec"]:,.0f}',
      ],
      ['speedup over naive at batch 256', f'{out["speedup_over_naive"]:.2f}x'],
      [
        "batch 256 with XLA's default options, windows/s (speedup of the "
        'training options)',
        f'{r256["xla_defaults_windows_per_sec"]:,.0f} '
        f'({out["speedup_over_xla_defaults"]:.2f}x)',
      ],
      [
        'batch 256 with the plain row update, windows/s (speedup of the '
        'packed one)',
        f'{r256["plain_rows_windows_per_sec"]:,.0f} '
        f'({out["speedup_over_plain_rows"]:.2f}x)',
      ],
      [
        f'best batch ({best["batch_size"]}), % of peak',
        f'{100 * best["fraction_of_peak"]:.0f}%',
      ],
      [
        f'full vocabulary ({full["vocab_size"]:,}) time / data vocabulary '
        f'({r256["vocab_size"]:,}) time',
        f'{out["full_vocab_time_ratio"]:.2f}x',
      ],
    ]
    + _sweep_rows(out)
    + _sentence_rows(out),
  )


def _plot(path, small, r256, peak):
  """throughput.png: windows/s by batch size (data vocabulary) against the
  matmuls alone, the matmul peak and the naive step; returns its path."""
  fig, (ax,) = render.figure()
  ax.plot(
    [r['batch_size'] for r in small],
    [r['windows_per_sec'] for r in small],
    'o-',
    label='compiled loop, sparse rows',
  )
  if 'matmuls_only_windows_per_sec' in r256:
    ax.plot(
      [r['batch_size'] for r in small],
      [r['matmuls_only_windows_per_sec'] for r in small],
      's:',
      color='tab:green',
      label='its matrix products alone',
    )
  ax.axhline(
    peak * 1e9 / r256['flops_per_window'],
    color='gray',
    ls='--',
    label='matmul peak / FLOPs per window',
  )
  ax.plot([256], [r256['naive_windows_per_sec']], 'rs', label='naive step')
  ax.set_xscale('log', base=2)
  ax.set_xticks(
    [r['batch_size'] for r in small], [str(r['batch_size']) for r in small]
  )
  ax.set_xlabel('batch size')
  ax.set_ylabel('training windows/s')
  ax.set_ylim(bottom=0)
  ax.set_title(f'hidden model, vocabulary {r256["vocab_size"]:,}')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  return render.save(fig, path)


def write_outputs(workdir, out):
  """bench.json, bench.md and throughput.png; returns the summary table."""
  peak, repeats = out['matmul_peak_gflops'], out['repeats']
  train_options = tuple(out['train_compiler_options'].items())
  r256 = next(
    r for r in out['runs'] if r['vocab'] == 'data' and r['batch_size'] == 256
  )
  small = [r for r in out['runs'] if r['vocab'] == 'data']
  full = next(r for r in out['runs'] if r['vocab'] == 'pretrained')
  best = max(small, key=lambda r: r['windows_per_sec'])
  table = [_table_row(r) for r in out['runs']]
  options = ', '.join(f'{k}={v!r}' for k, v in train_options) or 'none'
  summary = _summary(out, r256, best, full)
  png = _plot(workdir / 'throughput.png', small, r256, peak)
  workdir_lib.write_json(workdir / 'bench.json', out)
  render.write_report(
    workdir / 'bench.md',
    'Training throughput',
    [
      (
        'Machine',
        f'{out["device"]} ({out["backend"]}), jax {out["jax"]}; '
        f'FLOPs per window {r256["flops_per_window"]:,} (3x the '
        f'forward matmuls); training compiler options: {options}; '
        f'best of {repeats} interleaved rounds.',
      ),
      ('Summary', summary),
      ('Reading the table', READING_THE_TABLE),
      (
        'Throughput by batch size',
        render.markdown_table(TABLE_HEADERS, table),
      ),
      ('Plot', f'![]({png})'),
    ],
  )
  return summary
