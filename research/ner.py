"""NER on a data directory: windows and vectors in, scored models out."""

import dataclasses

import jax
import numpy as np

from research import classifier
from research import data as data_lib
from research import embeddings as emb_lib
from research import engine
from research import metrics
from research import model as model_lib
from research import vocab as vocab_lib

TRAIN_SAMPLE = 2000  # training sentences scored for learning curves


@dataclasses.dataclass
class Dataset:
  splits: dict  # split -> list[data.Sentence]
  tags: list
  vocab: vocab_lib.Vocab
  windows: dict  # split -> vocab_lib.Windows
  L_init: np.ndarray  # [V, d] initial word vectors
  coverage: dict


def load_dataset(
  data_dir,
  embeddings='glove',
  window=2,
  vocab='data',
  embed_dim=50,
  min_count=1,
  seed=0,
  log=print,
):
  """Reads the splits, builds the vocabulary, the windows and initial L.

  Args:
    data_dir: a CoNLL directory (see data.find_split_files).
    embeddings: 'glove', 'random' or a vectors file path.
    window: half-width k.
    vocab: 'data' (training words, plus dev/test words that have a
      pretrained vector) or 'pretrained' (also every pretrained word).
    embed_dim: d for random vectors.
    min_count: training words seen fewer times map to <unk> (unless they
      have a pretrained vector).
    seed: seed of the random vectors.
    log: progress printer.
  """
  splits = data_lib.load_splits(data_dir)
  tags = data_lib.check_tags(splits)
  pretrained = emb_lib.load_pretrained(embeddings)
  known = frozenset(pretrained.words) if pretrained else frozenset()
  others = [
    s for name, sents in splits.items() if name != 'train' for s in sents
  ]
  vocabulary = vocab_lib.Vocab.build(
    splits['train'],
    others,
    pretrained=known,
    min_count=min_count,
    all_pretrained=(vocab == 'pretrained'),
  )
  L_init, coverage = emb_lib.embedding_matrix(
    vocabulary, pretrained, embed_dim, seed
  )
  for name, sents in splits.items():
    coverage[f'{name}_token_coverage'] = emb_lib.token_coverage(
      sents, vocabulary, known
    )
  windows = {
    name: vocab_lib.make_windows(sents, vocabulary, tags, window)
    for name, sents in splits.items()
  }
  # A fixed, evenly spaced sample of training sentences for train-error curves.
  train = splits['train']
  picked = np.unique(np.linspace(0, len(train) - 1, TRAIN_SAMPLE).astype(int))
  sample = [train[i] for i in picked]
  splits['train_sample'] = sample
  windows['train_sample'] = vocab_lib.make_windows(
    sample, vocabulary, tags, window
  )
  sizes = ', '.join(
    f'{n} {len(s):,} sentences / {len(windows[n]):,} windows'
    for n, s in splits.items()
    if n != 'train_sample'
  )
  log(f'data {data_dir}: {sizes}; tags {" ".join(tags)}')
  if note := data_lib.empty_tokens_note(splits):
    log(note)
  source = pretrained.source if pretrained else f'random d={embed_dim}'
  cov = ', '.join(
    f'{n} {coverage[f"{n}_token_coverage"]:.1f}%'
    for n in splits
    if n != 'train_sample'
  )
  log(
    f'vectors {source}: vocabulary {len(vocabulary):,} words, '
    f'{coverage["covered"]:,} with a pretrained vector '
    f'({coverage["coverage"]:.1f}%); tokens covered: {cov}'
  )
  return Dataset(splits, tags, vocabulary, windows, L_init, coverage)


def init_params(ds, model_cfg, seed=0, num_classes=None):
  """model.init_params for a Dataset: its vocabulary, tags and initial L.

  num_classes: default one per tag (the window scorer passes 1).
  """
  return model_lib.init_params(
    jax.random.key(seed),
    model_cfg,
    vocab_size=len(ds.vocab),
    num_classes=len(ds.tags) if num_classes is None else num_classes,
    embeddings=ds.L_init,
  )


def tags_by_sentence(tag_ids, sentences, tags):
  """Splits a flat [N] array of tag ids into per-sentence tag lists."""
  names = np.asarray(tags, dtype=object)[np.asarray(tag_ids)]
  ends = np.cumsum([len(s.tokens) for s in sentences])[:-1]
  return [list(part) for part in np.split(names, ends)]


def evaluate(params, ds, split, model_cfg, objective):
  """Entity P/R/F1 (conlleval), token accuracy and mean loss on a split."""
  sentences = ds.splits[split]
  pred, window_loss = classifier.predict(
    params, ds.windows[split], model_cfg, objective
  )
  result = metrics.evaluate(
    [list(s.tags) for s in sentences],
    tags_by_sentence(pred, sentences, ds.tags),
  )
  out = metrics.as_dict(result)
  out['loss'] = float(window_loss.mean())
  return out


def train_and_evaluate(
  ds,
  model_cfg,
  cfg,
  hyper,
  *,
  epochs,
  seed=0,
  eval_every=0,
  eval_train=False,
  on_eval=None,
  log=print,
):
  """Initializes, trains and scores one model on a Dataset.

  Args:
    ds: a Dataset.
    model_cfg, cfg, hyper: model.ModelConfig, classifier.TrainConfig,
      engine.Hyper (scalars).
    epochs, seed, eval_every: see engine.fit.
    eval_train: also score a fixed sample of training sentences at each
      evaluation (under 'train'), for learning curves.
    on_eval: optional fn(row) called with each evaluation row (dev scores
      under 'dev', and train_loss, step, epoch).
    log: progress printer.

  Returns:
    (params, result): result has 'dev' (and 'test' when the data has a test
    split) scores, 'train_windows_per_sec', 'train_seconds',
    'compile_seconds', 'weight_norm', 'final_train_loss', 'coverage'.
  """
  params = init_params(ds, model_cfg, seed)
  log(
    f'model {model_cfg.model} ({model_lib.count_params(params):,} '
    f'parameters), objective {cfg.objective}, {cfg.optimizer} lr '
    f'{hyper.lr:g}, l2 {hyper.l2:g}, batch {cfg.batch_size}, '
    f'{epochs} epochs'
  )

  def evaluate_dev(params):
    row = {'dev': evaluate(params, ds, 'dev', model_cfg, cfg.objective)}
    if eval_train:
      row['train'] = evaluate(
        params, ds, 'train_sample', model_cfg, cfg.objective
      )
    log(
      f'  dev F1 {row["dev"]["f1"]:.2f}  accuracy '
      f'{row["dev"]["accuracy"]:.2f}  loss {row["dev"]["loss"]:.4f}'
    )
    return row

  def on_row(row):
    if on_eval is not None:
      on_eval(dict(row, train_loss=row['train_loss'][0]))

  stacked, rows, stats = classifier.fit(
    engine.stack([params]),
    ds.windows['train'],
    engine.Hyper([hyper.lr], [hyper.l2]),
    [seed],
    model_cfg,
    cfg,
    epochs=epochs,
    evaluate=lambda p: evaluate_dev(engine.unstack(p, 0)),
    eval_every=eval_every,
    on_eval=on_row,
    log=log,
  )
  params = engine.unstack(stacked, 0)
  result = {
    'dev': rows[-1]['dev'],
    'final_train_loss': rows[-1]['train_loss'][0],
    'weight_norm': classifier.weight_norm(params),
    **stats,
    'coverage': ds.coverage,
  }
  if 'test' in ds.splits:
    result['test'] = evaluate(params, ds, 'test', model_cfg, cfg.objective)
  return params, result
