"""The deck's window max-margin against a logistic classifier, same scorer.

Task: is the center word of a window an entity of type T (any prefix,
B-/I-/E-/S-)? Model: s = U . g(W x + b) on word + casing vectors. Objectives,
each trained for the same number of steps (epochs passes of batch_size
windows over all training windows) with the same optimizer and initial
parameters:

* margin, negatives 'corrupt' (the deck's): the true windows are the positive
  ones; J = sum over M corrupt windows of max(0, 1 - s + s_c), a corrupt
  window having its center word replaced by a uniformly drawn vocabulary
  word.
* margin, negatives 'corrupt+real': as above plus M real negative training
  windows per true window.
* logistic: sigma(s) with the logistic loss on all windows.

Scores: token-level precision/recall/F1 of `s > 0` (= sigma(s) > 0.5) on dev
(and test); average precision; the fraction of active hinges during training
and on fixed dev corruptions.
"""

import time
from typing import NamedTuple

import jax
import numpy as np

from research import engine
from research import model as model_lib
from research import render
from research import window_scorer
from research import workdir as workdir_lib
from research.errors import UserError

_DEV_CORRUPT_SEED = 1234  # fixed dev corruptions, shared by all runs

COLORS = {'logistic': 'tab:gray'}
PALETTE = ('tab:blue', 'tab:orange', 'tab:green')


def _runs(negatives):
  """(label, ScorerConfig overrides) of each model trained."""
  runs = [
    (f'margin ({n})', dict(objective='margin', negatives=n)) for n in negatives
  ]
  return runs + [('logistic', dict(objective='logistic'))]


def _split_arrays(ds, entity_type):
  """Windows and binary labels of each evaluated split."""
  out = {}
  for split in ('train', 'dev', 'test'):
    if split in ds.windows:
      w = ds.windows[split]
      out[split] = (
        w.words,
        w.casing,
        window_scorer.entity_labels(w.labels, ds.tags, entity_type),
      )
  return out


def _dev_pairs(words, casing, gold, num_corrupt, casing_table, vocab_size):
  """Fixed dev (true, corrupt) and (true, real negative) window pairs."""
  key = jax.random.key(_DEV_CORRUPT_SEED)
  k_corrupt, k_real = jax.random.split(key)
  pos, neg = np.flatnonzero(gold), np.flatnonzero(~gold)
  w, c = words[pos], casing[pos]
  cw, cc = window_scorer.corrupt_windows(
    k_corrupt, w, c, num_corrupt, vocab_size, casing_table
  )
  pairs = {'corrupt': (w, c, np.asarray(cw), np.asarray(cc))}
  if len(neg):
    real = neg[
      np.asarray(
        jax.random.randint(k_real, (len(pos), num_corrupt), 0, len(neg))
      )
    ]
    pairs['real'] = (w, c, words[real], casing[real])
  return pairs


def _fmt(values, fmt='{:.1f}'):
  values = [v for v in values if v is not None]
  return render.mean_std(values, fmt) if values else '-'


class Settings(NamedTuple):
  """What a window-margin study trains (the entry point's flags)."""

  entity_type: str = 'LOC'
  negatives: tuple = ('corrupt',)  # margin runs, each of NEGATIVES
  seeds: tuple = (0,)
  num_corrupt: int = 5
  corrupt_casing: str = 'word'
  nonlinearity: str = 'tanh'
  window: int = 2
  hidden: int = 300
  optimizer: str = 'adam'
  lr: float = 1e-3
  batch_size: int = 256
  epochs: int = 10
  eval_every: int = 0
  freeze_embeddings: bool = False


def check_negatives(negatives):
  """The distinct margin runs asked for, or a one-line error."""
  negatives = [n.strip() for n in negatives]
  bad = [n for n in negatives if n not in window_scorer.NEGATIVES]
  if bad or not negatives:
    raise UserError(
      f'--negatives={",".join(negatives)}: use one or both of '
      f'{", ".join(window_scorer.NEGATIVES)}'
    )
  return tuple(dict.fromkeys(negatives))


def check_entity_type(ds, entity_type):
  """Raises a one-line UserError when no tag has type `entity_type`."""
  window_scorer.entity_labels(
    ds.windows['train'].labels[:1], ds.tags, entity_type
  )


def run(ds, st, log=print):
  """Trains every model of `_runs(st.negatives)` for each seed.

  Returns:
    (results, arrays): results as written to results.json (entity_type,
    num_steps, steps_per_epoch, runs, total_seconds) and the evaluated
    splits' (words, casing, gold) arrays.
  """
  arrays = _split_arrays(ds, st.entity_type)  # checks the entity type
  words, casing, gold = arrays['train']
  V = len(ds.vocab)
  casing_table = window_scorer.casing_of_words(words, casing, V)
  data = window_scorer.TrainData(
    words,
    casing,
    gold.astype(np.float32),
    np.flatnonzero(gold).astype(np.int32),
    np.flatnonzero(~gold).astype(np.int32),
    casing_table,
  )
  data = jax.tree.map(jax.numpy.asarray, data)
  keep = st.corrupt_casing == 'keep'
  dev_pairs = _dev_pairs(
    *arrays['dev'], st.num_corrupt, None if keep else casing_table, V
  )
  counts = ', '.join(
    f'{s} {int(a[2].sum()):,}/{len(a[2]):,}' for s, a in arrays.items()
  )
  log(f'{st.entity_type} at the center (positive/all windows): {counts}')

  B = st.batch_size
  steps_per_epoch = max(1, len(gold) // B)
  num_steps = steps_per_epoch * st.epochs
  eval_every = st.eval_every or steps_per_epoch
  model_cfg = model_lib.ModelConfig(
    model='scorer',
    nonlinearity=st.nonlinearity,
    window=st.window,
    hidden=st.hidden,
  )
  base = dict(
    num_corrupt=st.num_corrupt,
    corrupt_casing=st.corrupt_casing,
    nonlinearity=st.nonlinearity,
    optimizer=st.optimizer,
    batch_size=B,
    freeze_embeddings=st.freeze_embeddings,
  )

  def evaluate(params, split='dev', threshold=0.0):
    w, c, g = arrays[split]
    s = window_scorer.predict_scores(params, w, c, model_cfg.nonlinearity)
    row = {split: window_scorer.detection_scores(s, g, threshold)}
    if split == 'dev':
      for name, pairs in dev_pairs.items():
        row[f'dev_hinge_{name}'] = window_scorer.hinge_stats(
          params, *pairs, nonlinearity=model_cfg.nonlinearity
        )
    return row

  results = {
    'entity_type': st.entity_type,
    'num_steps': num_steps,
    'steps_per_epoch': steps_per_epoch,
    'runs': [],
  }
  t_start = time.perf_counter()
  for seed in st.seeds:
    init = model_lib.init_params(
      jax.random.key(seed),
      model_cfg,
      vocab_size=V,
      num_classes=1,
      embeddings=ds.L_init,
    )
    for label, overrides in _runs(st.negatives):
      cfg = window_scorer.ScorerConfig(**base, **overrides)
      log(
        f'{label} seed {seed}: {model_lib.count_params(init):,} parameters, '
        f'{num_steps} steps of {B} true windows '
        f'({window_scorer.windows_per_step(cfg):,} scored)'
      )

      def evaluate_log(stacked, label=label):
        row = evaluate(engine.unstack(stacked, 0))
        d = row['dev']
        log(
          f'  {label} dev P {d["precision"]:.1f} R {d["recall"]:.1f} F1 '
          f'{d["f1"]:.1f} AP {d["ap"]:.1f}; dev active hinges: corrupt '
          f'{row["dev_hinge_corrupt"]["active"]:.3f}'
          + (
            f', real {row["dev_hinge_real"]["active"]:.3f}'
            if 'dev_hinge_real' in row
            else ''
          )
        )
        return row

      stacked, history, stats = window_scorer.fit(
        engine.stack([init]),
        data,
        engine.Hyper([st.lr], [0.0]),
        [seed],
        cfg,
        num_steps=num_steps,
        steps_per_epoch=steps_per_epoch,
        evaluate=evaluate_log,
        eval_every=eval_every,
        log=log,
        name=f'{label} seed {seed} ',
      )
      params = engine.unstack(stacked, 0)
      for h in history:  # one configuration: plain numbers
        for key in ('train_loss', 'train_active'):
          if key in h:
            h[key] = None if h[key] is None else h[key][0]
      per_step = stats['per_step']
      run = {
        'label': label,
        'seed': seed,
        'config': dict(cfg._asdict(), lr=st.lr),
        'dev': history[-1]['dev'],
        'history': history,
        'train_active_per_step': (
          [round(float(a), 4) for a in per_step['active'][0]]
          if cfg.objective == 'margin'
          else []
        ),
        'train_loss_per_step': [
          round(float(a), 5) for a in per_step['loss'][0]
        ],
        'windows_per_sec': stats['train_windows_per_sec'],
        **{k: stats[k] for k in ('train_seconds', 'compile_seconds', 'steps')},
      }
      for name in ('corrupt', 'real'):
        if f'dev_hinge_{name}' in history[-1]:
          run[f'dev_hinge_{name}'] = history[-1][f'dev_hinge_{name}']
      if 'test' in arrays:
        run['test'] = evaluate(params, 'test')['test']
        run['test_dev_threshold'] = evaluate(
          params, 'test', run['dev']['best_threshold']
        )['test']
      results['runs'].append(run)
  results['total_seconds'] = time.perf_counter() - t_start
  return results, arrays


def _table(results, labels, splits):
  """The report table: mean (± std over seeds) of each model's scores."""
  headers = ['model']
  for split in splits:
    headers += [f'{split} P', f'{split} R', f'{split} F1', f'{split} AP']
    headers.append('dev F1*' if split == 'dev' else f'{split} F1 (dev thr.)')
  headers += ['dev active hinges (corrupt / real)', 'windows/s']
  rows = []
  for label in labels:
    runs = [r for r in results['runs'] if r['label'] == label]
    row = [label]
    for split in splits:
      for key in ('precision', 'recall', 'f1', 'ap'):
        row.append(_fmt([r[split][key] for r in runs]))
      row.append(
        _fmt(
          [
            r['dev']['best_f1']
            if split == 'dev'
            else r[f'{split}_dev_threshold']['f1']
            for r in runs
          ]
        )
      )
    corrupt = _fmt([r['dev_hinge_corrupt']['active'] for r in runs], '{:.3f}')
    real = _fmt(
      [r.get('dev_hinge_real', {}).get('active') for r in runs], '{:.3f}'
    )
    row.append(f'{corrupt} / {real}')
    row.append(_fmt([r['windows_per_sec'] for r in runs], '{:,.0f}'))
    rows.append(row)
  return headers, rows


def _smooth(values, width):
  values = np.asarray(values, float)
  if width <= 1 or len(values) < width:
    return values
  kernel = np.ones(width) / width
  return np.convolve(values, kernel, mode='valid')


def _plots(workdir, results, labels):
  """active_hinges.png and dev_f1.png; returns their file names."""
  colors = {
    label: COLORS.get(label, PALETTE[i % len(PALETTE)])
    for i, label in enumerate(labels)
  }
  floor = 1e-3  # log axes: fractions below are drawn at the floor

  def clip(values):
    return np.maximum(np.asarray(values, float), floor)

  fig, (ax_train, ax_dev) = render.figure(ncols=2, width=6.0)
  for label in labels:
    for i, run in enumerate(r for r in results['runs'] if r['label'] == label):
      color = colors[label]
      lab = label if i == 0 else None
      active = np.asarray(run['train_active_per_step'], float)
      if run['config']['objective'] == 'margin' and len(active):
        width = max(1, len(active) // 100)
        smooth = _smooth(active, width)
        x = np.arange(len(smooth)) + (width + 1) / 2
        ax_train.plot(x, clip(smooth), color=color, label=lab, lw=1.2)
      steps = [h['step'] for h in run['history']]
      ax_dev.plot(
        steps,
        clip([h['dev_hinge_corrupt']['active'] for h in run['history']]),
        'o-',
        color=color,
        ms=3,
        label=f'{label}: corrupt' if lab else None,
      )
      if 'dev_hinge_real' in run['history'][0]:
        ax_dev.plot(
          steps,
          clip([h['dev_hinge_real']['active'] for h in run['history']]),
          's--',
          color=color,
          ms=3,
          label=f'{label}: real negatives' if lab else None,
        )
  ax_train.set(
    title='training batches (margin runs, smoothed)',
    xlabel='step',
    ylabel='fraction of hinges 1 - s + s_c > 0',
  )
  ax_dev.set(
    title='dev: fixed (true, corrupt) / (true, real negative)',
    xlabel='step',
    ylabel='fraction active',
  )
  for ax in (ax_train, ax_dev):
    ax.set_yscale('log')
    ax.set_ylim(floor * 0.8, 1.2)
    ax.grid(True, which='major', alpha=0.3)
  ax_train.legend(fontsize=7)
  ax_dev.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.02, 1.0))
  hinge_png = render.save(fig, workdir / 'active_hinges.png')

  fig, (ax_f1, ax_ap) = render.figure(ncols=2)
  for label in labels:
    for i, run in enumerate(r for r in results['runs'] if r['label'] == label):
      steps = [h['step'] for h in run['history']]
      lab = label if i == 0 else None
      ax_f1.plot(
        steps,
        [h['dev']['f1'] for h in run['history']],
        'o-',
        color=colors[label],
        ms=3,
        label=lab,
      )
      ax_ap.plot(
        steps,
        [h['dev']['ap'] for h in run['history']],
        'o-',
        color=colors[label],
        ms=3,
        label=lab,
      )
  ax_f1.set(
    title='dev F1 at s > 0', xlabel='step', ylabel='F1 (%)', ylim=(0, 100)
  )
  ax_ap.set(
    title='dev average precision', xlabel='step', ylabel='AP (%)', ylim=(0, 100)
  )
  ax_f1.legend(fontsize=7)
  f1_png = render.save(fig, workdir / 'dev_f1.png')
  return hinge_png, f1_png


def write_outputs(workdir, results, arrays, st, *, data_dir, embeddings):
  """results.json, results.csv, report.md and the two plots; returns the
  results table (markdown)."""
  negatives, seeds = st.negatives, st.seeds
  labels = [label for label, _ in _runs(negatives)]
  splits = [s for s in ('dev', 'test') if s in arrays]
  workdir_lib.write_json(workdir / 'results.json', results)

  csv_headers = ['model', 'objective', 'negatives', 'seed']
  for split in splits:
    csv_headers += [
      f'{split}_{k}' for k in ('precision', 'recall', 'f1', 'ap', 'best_f1')
    ]
  if 'test' in splits:
    csv_headers.append('test_f1_dev_threshold')
  csv_headers += [
    'dev_active_corrupt',
    'dev_active_real',
    'windows_per_sec',
    'train_seconds',
  ]
  csv_rows = []
  for r in results['runs']:
    row = [
      r['label'],
      r['config']['objective'],
      r['config']['negatives'] if r['config']['objective'] == 'margin' else '',
      r['seed'],
    ]
    for split in splits:
      row += [
        round(r[split][k], 4)
        for k in ('precision', 'recall', 'f1', 'ap', 'best_f1')
      ]
    if 'test' in splits:
      row.append(round(r['test_dev_threshold']['f1'], 4))
    real = r.get('dev_hinge_real', {}).get('active')
    row += [
      round(r['dev_hinge_corrupt']['active'], 4),
      '' if real is None else round(real, 4),
      round(r['windows_per_sec']),
      round(r['train_seconds'], 2),
    ]
    csv_rows.append(row)
  render.write_csv(workdir / 'results.csv', csv_headers, csv_rows)

  hinge_png, f1_png = _plots(workdir, results, labels)
  hinge_text = f"""Fraction of hinges 1 - s + s_c > 0: left, in the training
batches of the margin runs (moving average); right, on the fixed dev pairs,
for every model. Log scale; fractions below 0.001 are drawn at 0.001.

![]({hinge_png})"""
  headers, rows = _table(results, labels, splits)
  table = render.markdown_table(headers, rows)
  T = results['entity_type']
  counts = ', '.join(
    f'{s} {int(a[2].sum()):,} of {len(a[2]):,}' for s, a in arrays.items()
  )
  rates = {s: arrays[s][2].mean() for s in splits}
  num_pos = int(arrays['train'][2].sum())
  passes = results['num_steps'] * st.batch_size / max(1, num_pos)
  everything = ', '.join(
    f'{s} P {100 * r:.1f}, F1 {200 * r / (1 + r):.1f}' for s, r in rates.items()
  )
  setup = f"""
Task: is the center word of a window an entity of type **{T}** (any tag
X-{T})? Windows with a {T} center: {counts}. Data `{data_dir}`,
vectors `{embeddings}`, window k={st.window}, word +
casing vectors, hidden {st.hidden} ({st.nonlinearity}),
{st.optimizer} lr {st.lr:g}, {results['num_steps']} steps
of {st.batch_size} true windows ({st.epochs} epochs of
{results['steps_per_epoch']} steps over all training windows; batches drawn
with replacement, so the margin runs, whose true windows are the
{num_pos:,} training {T} windows, see each about {passes:.0f} times), seeds
{', '.join(map(str, seeds))}. Every model is the scorer s = U . g(W x + b)
from the same initial parameters; only the objective differs:

- **margin (corrupt)**: the deck's objective. True windows are the {T}
  windows only; J = sum over M={st.num_corrupt} corrupt windows of
  max(0, 1 - s + s_c), a corrupt window being the true window with its center
  word replaced by a word drawn uniformly from the vocabulary (center casing:
  `{st.corrupt_casing}`). Real non-{T} windows are never seen in training.
- **margin (corrupt+real)** (`--negatives=corrupt+real`): the same, plus M
  real non-{T} training windows drawn uniformly as further s_c per true
  window.
- **logistic**: sigma(s) with the logistic loss on all training windows.

Detection is s > 0 for every model (for the logistic one this is
sigma(s) > 0.5). P/R/F1 are token level (one decision per window); calling
every window positive would score R 100 and {everything}. AP is the
average precision of the ranking by s (threshold-free); dev F1* is the F1 of
the best threshold on dev itself (an oracle, to tell ranking from
calibration), and test F1 (dev thr.) the test F1 at that dev threshold.
Active hinges: fraction of pairs with 1 - s + s_c > 0 on fixed dev pairs (each
dev {T} window with M corrupt windows, and with M real non-{T} dev windows),
for every model. windows/s counts every window scored in training, corrupt and
negative ones included.
"""
  render.write_report(
    workdir / 'report.md',
    f'Window max-margin vs logistic: {T} detection',
    [
      ('Setup', setup),
      ('Results', table),
      ('Active hinges', hinge_text),
      ('Dev F1 and AP during training', f'![]({f1_png})'),
    ],
  )
  return table
