"""The frozen-vs-fine-tuned study's report: tables, verdict, plot, report.md.

The study and its definitions are research/studies/frozen_vectors.py; this
module renders what its `run` returned.
"""

import numpy as np

from research import workdir as workdir_lib
from research.reports import render
from research.studies import frozen_vectors as study


def _cells(runs, fraction, mode, key):
  return [
    r['dev'][key]['f1']
    for r in runs
    if r['fraction'] == fraction and r['mode'] == mode
  ]


def _deltas(runs, fraction, key):
  """Fine-tuned minus frozen F1, paired by seed."""
  by = {
    (r['mode'], r['seed']): r['dev'][key]['f1']
    for r in runs
    if r['fraction'] == fraction
  }
  seeds = sorted({s for _, s in by})
  return np.array([by['fine-tuned', s] - by['frozen', s] for s in seeds])


def table(runs, fractions):
  """(headers, rows) of the main table: mean ± std over seeds."""
  headers = [
    'fraction',
    'train sentences',
    'epochs (steps)',
    'vectors',
    'dev F1',
    'unseen F1',
    'mixed F1',
    'seen F1',
    'gold unseen/mixed/seen (seed mean)',
  ]
  rows = []
  for f in fractions:
    for mode in study.MODES:
      mine = [r for r in runs if r['fraction'] == f and r['mode'] == mode]
      first = mine[0]
      counts = '/'.join(
        f'{np.mean([r["dev"][g]["num_gold"] for r in mine]):.0f}'
        for g in study.GROUPS
      )
      rows.append(
        [
          f'{f:g}',
          f'{first["train_sentences"]:,}',
          f'{first["epochs"]} ({first["steps"]:,})',
          mode,
          *(
            render.mean_std(_cells(runs, f, mode, k))
            for k in ('overall', *study.GROUPS)
          ),
          counts,
        ]
      )
  return headers, rows


def delta_table(runs, fractions):
  headers = ['fraction', 'Δ dev F1', 'Δ unseen F1', 'Δ mixed F1', 'Δ seen F1']
  rows = []
  for f in fractions:
    cells = []
    for key in ('overall', *study.GROUPS):
      d = _deltas(runs, f, key)
      cells.append(
        f'{d.mean():+.2f} ± {d.std():.2f} ({int((d > 0).sum())}/{len(d)} +)'
      )
    rows.append([f'{f:g}', *cells])
  return headers, rows


def judge(d, claimed_sign):
  """How the paired differences d bear on a claim that their sign is +/-1.

  Returns:
    'held' (every seed has the claimed sign), 'was contradicted' (every seed
    the opposite), or 'is inconclusive (...)' naming the mean's direction and
    how many seeds have the claimed sign.
  """
  agree = int((np.sign(d) == claimed_sign).sum())
  if len(d) and agree == len(d):
    return 'held'
  if len(d) and (np.sign(d) == -claimed_sign).all():
    return 'was contradicted'
  lean = (
    'the mean goes the claimed way'
    if np.sign(d.mean()) == claimed_sign
    else 'the mean goes against it'
  )
  return f'is inconclusive ({lean}, {agree}/{len(d)} seeds agree)'


def _fmt(d):
  return f'{d.mean():+.2f} ± {d.std():.2f}, {int((d > 0).sum())}/{len(d)} +'


def verdict(runs, fractions):
  """The claim checked against the numbers, as markdown text."""
  small, large = min(fractions), max(fractions)
  d_unseen = _deltas(runs, small, 'unseen')
  d_small = _deltas(runs, small, 'overall')
  d_large = _deltas(runs, large, 'overall')
  n = len(d_small)
  rule = (
    f'a part holds when all {n} seeds give Δ the claimed sign and is '
    'contradicted when all give the opposite'
    if n > 1
    else 'one seed, so the sign of Δ decides and nothing measures the noise'
  )
  by_group = {
    key: [_deltas(runs, f, key) for f in fractions]
    for key in ('unseen', 'seen')
  }
  pattern = []
  for key, sign, word in (('unseen', -1, 'below'), ('seen', 1, 'above')):
    every = all((d * sign > 0).all() for d in by_group[key])
    means = ', '.join(
      f'{f:g}: {d.mean():+.2f}' for f, d in zip(fractions, by_group[key])
    )
    pattern.append(
      f'{key} entities: mean Δ {means}'
      + (
        f' — fine-tuned is {word} frozen in every seed at every fraction'
        if every
        else ''
      )
    )
  lines = [
    f'Δ = fine-tuned − frozen dev F1, paired by seed (mean ± std, seeds '
    f'with Δ > 0). Rule: {rule}.',
    '',
    f'* **Little data** (fraction {small:g}): unseen entities Δ '
    f'{_fmt(d_unseen)}; all entities Δ {_fmt(d_small)}. "Fine-tuning hurts '
    f'the words seen only at test time" **{judge(d_unseen, -1)}**; '
    f'"fine-tuning hurts overall" **{judge(d_small, -1)}**.',
    f'* **Much data** (fraction {large:g}): all entities Δ {_fmt(d_large)}. '
    f'"Fine-tuning helps with much data" **{judge(d_large, 1)}**.',
    f'* By group: {pattern[0]}; {pattern[1]}.',
  ]
  return '\n'.join(lines)


def plot(runs, fractions, path):
  fig, axes = render.figure(ncols=3, width=4.2)
  x = np.array(fractions)
  for ax, key in zip(axes, ('overall', 'unseen', 'seen')):
    for mode, marker in zip(study.MODES, ('o', 's')):
      values = [np.array(_cells(runs, f, mode, key)) for f in fractions]
      ax.errorbar(
        x,
        [v.mean() for v in values],
        yerr=[v.std() for v in values],
        marker=marker,
        capsize=3,
        label=mode,
      )
    ax.set_xscale('log')
    ax.set_xticks(x, [f'{f:g}' for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel('fraction of training sentences')
    ax.set_ylabel('dev entity F1')
    ax.set_title(f'{key} entities' if key != 'overall' else 'all entities')
    ax.grid(alpha=0.3)
    ax.legend()
  return render.save(fig, path)


CSV_RUN_KEYS = [
  'fraction',
  'seed',
  'mode',
  'train_sentences',
  'train_windows',
  'epochs',
  'steps',
  'batch_size',
]
CSV_METRICS = (
  'f1',
  'precision',
  'recall',
  'num_gold',
  'num_pred',
  'num_correct',
)


def _write_csv(path, runs):
  """results.csv: one row per run, its settings then every group's
  scores."""
  keys = ('overall', *study.GROUPS)
  csv_headers = CSV_RUN_KEYS + [f'{k}_{m}' for k in keys for m in CSV_METRICS]
  render.write_csv(
    path,
    csv_headers,
    [
      [r[h] for h in CSV_RUN_KEYS]
      + [r['dev'][k][m] for k in keys for m in CSV_METRICS]
      for r in runs
    ],
  )


def _setup(
  ds, model_cfg, cfg, seeds, lr, epochs, max_epochs, data_dir, embeddings
):
  """The report's Setup section: data, model, training and the study's
  definitions (subset, vocabulary, groups, budget)."""
  first = ds.splits['train']
  return (
    f'Data `{data_dir}` ({len(first):,} training sentences, '
    f'{len(ds.splits["dev"]):,} dev sentences), vectors '
    f'`{embeddings}`, model {model_cfg.model} '
    f'(k={model_cfg.window}, hidden {model_cfg.hidden}, '
    f'{model_cfg.nonlinearity}), {cfg.optimizer} lr '
    f'{lr:g}, no L2, seeds {", ".join(map(str, seeds))}. '
    "'frozen' keeps L (the word vectors) fixed; the casing vectors and the "
    "layers train in both. 'fine-tuned' also updates the rows of L that a "
    'batch touches.\n\n'
    '* **Subset**: for seed s, the first round(f·n) sentences of a random '
    'permutation of the n training sentences seeded by s (nested across '
    'fractions, shared by frozen and fine-tuned).\n'
    "* **Vocabulary**: the subset's words plus every word with a "
    'pretrained vector, so dev words keep their pretrained vectors.\n'
    '* **Groups**: a token is *seen* when its lowercased form occurs among '
    'the lowercased tokens of the training subset (any position, any tag). '
    'A chunk is *seen* if all its tokens are seen, *unseen* if none is, '
    '*mixed* otherwise. Gold and predicted chunks are grouped by the same '
    'rule on their own tokens; per group, precision = correct / predicted '
    'and recall = correct / gold (a correct chunk spans the same tokens as '
    'its gold chunk, so it is in the same group).\n'
    f'* **Budget**: each fraction gets about the steps of {epochs} passes '
    f'over the full training split (fraction f: ~{epochs}/f passes over '
    f'its subset), at most {max_epochs} passes; the scores are '
    f'those of the final parameters (no early stopping on dev).'
  )


def write_outputs(
  workdir,
  result,
  ds,
  *,
  model_cfg,
  cfg,
  fractions,
  seeds,
  lr,
  epochs,
  max_epochs,
  data_dir,
  embeddings,
):
  """results.json, results.csv, report.md and the plot; returns the text
  printed at the end (tables and verdict)."""
  runs, elapsed = result['runs'], result['seconds']
  headers, rows = table(runs, fractions)
  d_headers, d_rows = delta_table(runs, fractions)
  workdir_lib.write_json(
    workdir / 'results.json',
    {
      'data_dir': data_dir,
      'embeddings': embeddings,
      'model': model_cfg._asdict(),
      'fractions': fractions,
      'seeds': seeds,
      'epochs_full': epochs,
      'max_epochs': max_epochs,
      'seconds': elapsed,
      'runs': runs,
    },
  )
  _write_csv(workdir / 'results.csv', runs)
  png = plot(runs, fractions, workdir / study.PLOT_NAME)
  main_table = render.markdown_table(headers, rows)
  deltas = render.markdown_table(d_headers, d_rows)
  setup = _setup(
    ds, model_cfg, cfg, seeds, lr, epochs, max_epochs, data_dir, embeddings
  )
  render.write_report(
    workdir / 'report.md',
    'Frozen vs fine-tuned word vectors',
    [
      ('Setup', setup),
      ('Dev entity F1 (mean ± std over seeds)', main_table),
      (
        'Fine-tuned minus frozen (paired by seed; '
        '(k/n +): seeds where fine-tuning is better)',
        deltas,
      ),
      ('Plot', f'![F1 vs training fraction]({png})'),
      ('Verdict', verdict(runs, fractions)),
    ],
  )
  return '\n\n'.join([main_table, deltas, verdict(runs, fractions)])
