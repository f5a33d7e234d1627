"""NER on a data directory: windows and vectors in, scored models out."""

import dataclasses
import functools

import jax
import numpy as np

from research import classifier
from research import crf
from research import data as data_lib
from research import document_context
from research import embeddings as emb_lib
from research import engine
from research import features as features_lib
from research import gazetteer as gazetteer_lib
from research import metrics
from research import model as model_lib
from research import sequence
from research import tagschemes
from research import vocab as vocab_lib

TRAIN_SAMPLE = 2000  # training sentences scored for learning curves
DECODES = ('argmax', 'viterbi')
SELECTIONS = ('last', 'best_dev')


@dataclasses.dataclass
class Dataset:
  """A data directory made ready to train on.

  tags are the model's classes, in `tag_scheme` ('iobes' when training on
  IOBES, else the file's own scheme, `file_scheme`); the windows' labels
  use them. Scores are always computed on the file's tags.
  """

  splits: dict  # split -> list[data.Sentence]
  tags: list
  vocab: vocab_lib.Vocab
  windows: dict  # split -> vocab_lib.Windows
  L_init: np.ndarray  # [V, d] initial word vectors
  coverage: dict
  features: features_lib.FeatureVocab | None = None
  tag_scheme: str = 'iob2'
  file_scheme: str = 'iob2'
  gazetteer: gazetteer_lib.Gazetteer | None = None  # for new text
  first_pass_done: bool = False  # the document feature holds its values


def load_dataset(
  data_dir,
  embeddings='glove',
  window=2,
  vocab='data',
  embed_dim=50,
  min_count=1,
  seed=0,
  log=print,
  features=(),
  affix_length=3,
  tag_scheme='file',
  gazetteer_file=None,
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
    features: kinds of research.features to give every word ((): none).
    affix_length: n of the prefix and suffix features.
    tag_scheme: 'file' (train on the file's tags) or 'iobes'.
    gazetteer_file: a user's lists (gazetteer.read) added to those from
      the training labels, for the 'gazetteer' feature.
  """
  if tag_scheme not in tagschemes.SCHEMES:
    raise ValueError(f'tag_scheme must be one of {tagschemes.SCHEMES}')
  splits = data_lib.load_splits(data_dir)
  file_tags = data_lib.check_tags(splits)
  file_scheme = tagschemes.file_scheme(s.tags for s in splits['train'])
  scheme = file_scheme if tag_scheme == 'file' else tag_scheme
  tags = tagschemes.tag_set(file_tags, scheme)
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
  # The document feature comes last: its rows of L_feat are dropped for the
  # first pass (FeatureVocab.without).
  features = tuple(sorted(features, key=lambda k: k == 'document'))
  feature_vocab = gazetteer = None
  context = {name: {} for name in splits}
  if 'gazetteer' in features:
    extra = gazetteer_lib.read(gazetteer_file) if gazetteer_file else None
    gazetteer = gazetteer_lib.Gazetteer.from_sentences(splits['train'])
    if extra is not None:
      gazetteer = gazetteer.union(extra)
    for name, sents in splits.items():
      context[name]['gazetteer'] = (
        gazetteer_lib.fold_values(sents, extra)
        if name == 'train'
        else [gazetteer.values(s.tokens) for s in sents]
      )
  if 'document' in features:
    # No first pass yet: every word reads NONE until train_and_evaluate's.
    for name, sents in splits.items():
      context[name]['document'] = [
        [document_context.NONE] * len(s.tokens) for s in sents
      ]
  if features:
    types = sorted({t[2:] for t in file_tags if t != 'O'})
    feature_vocab = features_lib.FeatureVocab.build(
      splits['train'],
      features,
      affix_length,
      dict(context['train'], document=[document_context.domain(types)]),
    )

  def make(sents, values):
    if scheme != file_scheme:
      sents = [
        dataclasses.replace(s, tags=tuple(tagschemes.convert(s.tags, scheme)))
        for s in sents
      ]
    return vocab_lib.make_windows(
      sents, vocabulary, tags, window, feature_vocab, values
    )

  windows = {name: make(sents, context[name]) for name, sents in splits.items()}
  # A fixed, evenly spaced sample of training sentences for train-error curves.
  train = splits['train']
  picked = np.unique(np.linspace(0, len(train) - 1, TRAIN_SAMPLE).astype(int))
  sample = [train[i] for i in picked]
  splits['train_sample'] = sample
  windows['train_sample'] = make(
    sample, {k: [v[i] for i in picked] for k, v in context['train'].items()}
  )
  sizes = ', '.join(
    f'{n} {len(s):,} sentences / {len(windows[n]):,} windows'
    for n, s in splits.items()
    if n != 'train_sample'
  )
  log(f'data {data_dir}: {sizes}; tags {" ".join(file_tags)} ({file_scheme})')
  if scheme != file_scheme:
    log(f'training on {scheme.upper()} tags ({len(tags)} classes)')
  if feature_vocab is not None:
    log(feature_vocab.describe())
  if gazetteer is not None:
    log(
      f'gazetteer: {len(gazetteer):,} phrases (training sentences read lists '
      f'built without their fold, 1 of {gazetteer_lib.FOLDS})'
    )
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
  return Dataset(
    splits,
    tags,
    vocabulary,
    windows,
    L_init,
    coverage,
    feature_vocab,
    scheme,
    file_scheme,
    gazetteer,
  )


def init_params(ds, model_cfg, seed=0, num_classes=None, objective='xent'):
  """model.init_params for a Dataset: its vocabulary, tags, features and
  initial L (and zero transitions for a sentence-level objective).

  num_classes: default one per tag (the window scorer passes 1).
  """
  C = len(ds.tags) if num_classes is None else num_classes
  fv = ds.features
  params = model_lib.init_params(
    jax.random.key(seed),
    model_cfg,
    vocab_size=len(ds.vocab),
    num_classes=C,
    embeddings=ds.L_init,
    feature_rows=fv.size if fv else 0,
    feature_kinds=len(fv) if fv else 0,
    feature_dim=model_cfg.feature_dim,
  )
  if objective in crf.OBJECTIVES:
    params = sequence.init_transitions(params, C)
  return params


def trains_on_sentences(ds, objective, decode='argmax', word_dropout=0.0):
  """Whether training needs whole sentences (research.sequence) rather than
  shuffled windows: a sentence-level objective, features, IOBES tags, word
  dropout or Viterbi decoding."""
  return bool(
    objective in crf.OBJECTIVES
    or ds.features is not None
    or ds.tag_scheme != ds.file_scheme
    or word_dropout > 0
    or decode == 'viterbi'
  )


def predict_ids(
  params, windows, lengths, tags, scheme, model_cfg, objective, decode='argmax'
):
  """Predicted class ids [N] of windows of sentences of `lengths` words.

  A sentence-level objective decodes by Viterbi with its transitions;
  decode='viterbi' decodes a window-level model's scores (log-probabilities
  for cross-entropy) by Viterbi too. Both forbid transitions the tag scheme
  does not allow (tagschemes.valid_transitions). Params with a leading
  member axis are an ensemble: their scores are averaged.
  """
  sentence_level = objective in crf.OBJECTIVES
  if (
    decode == 'argmax'
    and not sentence_level
    and windows.feats is None
    and np.ndim(params['L']) == 2
  ):
    return classifier.predict(params, windows, model_cfg, objective)[0]
  trans = None
  if sentence_level or decode == 'viterbi':
    allowed = tagschemes.valid_transitions(tags, scheme)
    trans = sequence.decode_transitions(params, len(tags), allowed, objective)
  return sequence.predict(
    params, windows, lengths, model_cfg, trans, log_probs=objective == 'xent'
  )


def file_tags(ds, tag_lists):
  """Tag lists in the model's scheme, written in the file's."""
  if ds.tag_scheme == ds.file_scheme:
    return tag_lists
  return [tagschemes.convert(t, ds.file_scheme) for t in tag_lists]


def tags_by_sentence(tag_ids, sentences, tags):
  """Splits a flat [N] array of tag ids into per-sentence tag lists."""
  names = np.asarray(tags, dtype=object)[np.asarray(tag_ids)]
  ends = np.cumsum([len(s.tokens) for s in sentences])[:-1]
  return [list(part) for part in np.split(names, ends)]


def evaluate(params, ds, split, model_cfg, objective, decode='argmax'):
  """Entity P/R/F1 (conlleval) and token accuracy on a split, against the
  file's tags; and the mean window loss of a window-level model decoded by
  argmax."""
  sentences = ds.splits[split]
  windows = ds.windows[split]
  window_level = not trains_on_sentences(ds, objective, decode)
  if window_level and np.ndim(params['L']) == 2:
    pred, window_loss = classifier.predict(
      params, windows, model_cfg, objective
    )
  else:
    window_loss = None
    pred = predict_ids(
      params,
      windows,
      sequence.sentence_lengths(sentences),
      ds.tags,
      ds.tag_scheme,
      model_cfg,
      objective,
      decode,
    )
  result = metrics.evaluate(
    [list(s.tags) for s in sentences],
    file_tags(ds, tags_by_sentence(pred, sentences, ds.tags)),
  )
  out = metrics.as_dict(result)
  if window_loss is not None:
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
  decode='argmax',
  select='last',
  ensemble=1,
  checkpoint=None,
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
    decode: 'argmax' or 'viterbi' (see predict_ids).
    select: 'last' (the final parameters) or 'best_dev' (those of the
      evaluation with the best dev F1).
    ensemble: members trained together (seeds seed, seed+1, ...) as one
      program (engine.stack_mode); their scores are averaged.
    checkpoint: an optional research.checkpoint.Checkpointer; the model's
      training checkpoints into its child 'model' (the first pass of the
      document feature into 'first_pass_1' and 'first_pass_2'), with the
      best-dev parameters, so that a resumed run ends as an uninterrupted
      one would.

  Returns:
    (params, result): params stacked on a leading member axis when
    ensemble > 1; result has 'dev' (and 'test' when the data has a test
    split) scores, 'selected' (which evaluation's parameters),
    'trained_on' ('windows' or 'sentences'), 'train_windows_per_sec' (words
    of all members per second), 'train_seconds', 'compile_seconds',
    'weight_norm', 'final_train_loss', 'coverage'.
  """
  if select not in SELECTIONS:
    raise ValueError(f'select must be one of {SELECTIONS}')
  if has_document_feature(ds) and not ds.first_pass_done:
    from research import two_passes  # noqa: PLC0415 (it imports this module)

    return two_passes.train(
      ds,
      model_cfg,
      cfg,
      hyper,
      epochs=epochs,
      seed=seed,
      eval_every=eval_every,
      eval_train=eval_train,
      on_eval=on_eval,
      log=log,
      decode=decode,
      select=select,
      ensemble=ensemble,
      checkpoint=checkpoint,
    )
  seeds = [seed + i for i in range(ensemble)]
  members = [
    init_params(ds, model_cfg, s, objective=cfg.objective) for s in seeds
  ]
  sentences = (
    trains_on_sentences(ds, cfg.objective, decode, cfg.word_dropout)
    or ensemble > 1
  )
  log(
    f'model {model_cfg.model} ({model_lib.count_params(members[0]):,} '
    f'parameters{f", {ensemble} members" if ensemble > 1 else ""}), '
    f'objective {cfg.objective}, {cfg.optimizer} lr {hyper.lr:g}, '
    f'l2 {hyper.l2:g}, batch {cfg.batch_size}, {epochs} epochs, trained on '
    f'{"sentences" if sentences else "windows"}'
  )

  def as_model(stacked):
    return stacked if ensemble > 1 else engine.unstack(stacked, 0)

  best = {'f1': -1.0}

  def evaluate_dev(stacked):
    params = as_model(stacked)
    ev = functools.partial(
      evaluate,
      params,
      ds,
      model_cfg=model_cfg,
      objective=cfg.objective,
      decode=decode,
    )
    row = {'dev': ev(split='dev')}
    if eval_train:
      row['train'] = ev(split='train_sample')
    loss = f'  loss {row["dev"]["loss"]:.4f}' if 'loss' in row['dev'] else ''
    log(
      f'  dev F1 {row["dev"]["f1"]:.2f}  accuracy '
      f'{row["dev"]["accuracy"]:.2f}{loss}'
    )
    if select == 'best_dev' and row['dev']['f1'] > best['f1']:
      # A copy on the host: an ensemble's params are the training state's
      # buffers, which the next compiled call may overwrite (donation).
      best.update(
        f1=row['dev']['f1'],
        params=jax.tree.map(np.array, params),
        dev=row['dev'],
      )
    return row

  def on_row(row):
    if select == 'best_dev' and 'params' in best and best['dev'] is row['dev']:
      best.update(step=row['step'], epoch=row['epoch'])
    if on_eval is not None:
      on_eval(dict(row, train_loss=row['train_loss'][0]))

  class BestDev:
    """The best-dev parameters and where they were, in each checkpoint."""

    @staticmethod
    def get():
      record = {k: best[k] for k in ('f1', 'dev', 'step', 'epoch') if k in best}
      return best.get('params', {}), record

    @staticmethod
    def set(params, record):
      best.update(record)
      if params:
        best['params'] = jax.tree.map(np.asarray, params)

  hypers = engine.Hyper([hyper.lr] * ensemble, [hyper.l2] * ensemble)
  kw = dict(
    epochs=epochs,
    evaluate=evaluate_dev,
    eval_every=eval_every,
    on_eval=on_row,
    log=log,
    checkpoint=checkpoint and checkpoint.child('model'),
    extra=BestDev if select == 'best_dev' else None,
  )
  if sentences:
    stacked, rows, stats = sequence.fit(
      engine.stack(members),
      ds.windows['train'],
      sequence.sentence_lengths(ds.splits['train']),
      hypers,
      seeds,
      model_cfg,
      cfg,
      **kw,
    )
  else:
    stacked, rows, stats = classifier.fit(
      engine.stack(members),
      ds.windows['train'],
      hypers,
      seeds,
      model_cfg,
      cfg,
      **kw,
    )
  params = as_model(stacked)
  selected = {
    'rule': 'last',
    'step': rows[-1]['step'],
    'epoch': rows[-1]['epoch'],
  }
  dev = rows[-1]['dev']
  if select == 'best_dev':
    params, dev = best['params'], best['dev']
    selected = {
      'rule': 'best dev F1',
      'step': best['step'],
      'epoch': best['epoch'],
    }
    log(
      f'selected the parameters of step {best["step"]} (epoch '
      f'{best["epoch"]:g}): best dev F1 {dev["f1"]:.2f}'
    )
  result = {
    'dev': dev,
    'selected': selected,
    'trained_on': 'sentences' if sentences else 'windows',
    'final_train_loss': rows[-1]['train_loss'][0],
    'weight_norm': classifier.weight_norm(
      params if ensemble == 1 else engine.unstack(params, 0)
    ),
    **stats,
    'coverage': ds.coverage,
  }
  if 'test' in ds.splits:
    result['test'] = evaluate(
      params, ds, 'test', model_cfg, cfg.objective, decode
    )
  return params, result


def model_config_json(ds, model_cfg, cfg, decode):
  """What config.json holds to tag new text with a model (tagging.load)."""
  out = {
    'model': model_cfg._asdict(),
    'train': cfg._asdict(),
    'decode': decode,
    'tag_scheme': ds.tag_scheme,
    'file_scheme': ds.file_scheme,
  }
  if ds.features is not None:
    out['features'] = ds.features.to_json()
  if ds.gazetteer is not None:
    out['gazetteer'] = ds.gazetteer.to_json()
  return out


def has_document_feature(ds):
  return ds.features is not None and 'document' in ds.features.kinds
