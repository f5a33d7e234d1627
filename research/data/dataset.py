"""The Dataset: a data directory read, its vocabulary and initial word
vectors built, and every split turned into windows (cached on disk by
research.data.cache)."""

import dataclasses

import numpy as np

from research.data import cache as dataset_cache
from research.data import conll as data_lib
from research.data import embeddings as emb_lib
from research.data import features as features_lib
from research.data import gazetteer as gazetteer_lib
from research.data import tagschemes
from research.data import vocab as vocab_lib
from research.formulas import chars as chars_lib

TRAIN_SAMPLE = 2000  # training sentences scored for learning curves


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
  chars: chars_lib.CharVocab | None = None  # the character CNN's


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
  case_augment=0.0,
  cache_dir=None,
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
    features: kinds of research.data.features to give every word ((): none),
      and 'chars' to spell every word for the character CNN
      (research.formulas.chars); not 'document', which is a transform of the
      Dataset (two_passes.prepare, applied by training.train(document=True)).
    affix_length: n of the prefix and suffix features.
    tag_scheme: 'file' (train on the file's tags) or 'iobes'.
    gazetteer_file: a user's lists (gazetteer.read) added to those from
      the training labels, for the 'gazetteer' feature.
    case_augment: a fraction of the training documents added again, every
      word lowercased (or, one copy in two, uppercased): casing that text
      written otherwise does not break (`case_copies`); 0 for none.
    cache_dir: a directory of research.data.cache entries: a load with
      the same arguments and files reads the Dataset from there (and logs
      the same lines); None reads the files.
  """
  arguments = dict(locals())
  del arguments['log'], arguments['cache_dir']
  name = cache_dir and _cache_name(arguments)
  if name and (hit := dataset_cache.load(cache_dir, name)) is not None:
    ds, lines = hit
    for line in lines:
      log(line)
    return ds
  lines = []
  ds = _load(**arguments, log=lambda line: (lines.append(line), log(line)))
  if name:
    dataset_cache.save(cache_dir, name, (ds, lines))
  return ds


def case_copies(sentences, fraction):
  """Copies of every n-th document of `sentences` (n = round(1 / fraction)),
  alternately all lowercase and all uppercase, each a document of its own
  (document ids from 1,000,000): the same words and tags without the
  casing that newswire writes names in."""
  if not 0 < fraction <= 1:
    raise ValueError(f'case_augment must be in (0, 1], got {fraction}')
  documents = {}
  for s in sentences:
    documents.setdefault((s.path, s.document), []).append(s)
  step = max(1, round(1 / fraction))
  copies = []
  for i, key in enumerate(list(documents)[::step]):
    change = str.lower if i % 2 == 0 else str.upper
    copies += [
      dataclasses.replace(
        s, tokens=tuple(map(change, s.tokens)), document=1_000_000 + i
      )
      for s in documents[key]
    ]
  return copies


def _cache_name(arguments):
  """The dataset_cache entry of load_dataset's arguments, or None when the
  files it would read are not all there (the load then says what is wrong)."""
  paths = list(data_lib.find_split_files(arguments['data_dir']).values())
  if arguments['embeddings'] not in ('glove', 'random'):
    paths.append(arguments['embeddings'])
  elif arguments['embeddings'] == 'glove':
    paths += emb_lib.glove_files()
  if arguments['gazetteer_file']:
    paths.append(arguments['gazetteer_file'])
  try:
    return dataset_cache.key(arguments, paths)
  except OSError:
    return None


def _load(
  data_dir,
  embeddings,
  window,
  vocab,
  embed_dim,
  min_count,
  seed,
  log,
  features,
  affix_length,
  tag_scheme,
  gazetteer_file,
  case_augment,
):
  """load_dataset, from the files."""
  if tag_scheme not in tagschemes.SCHEMES:
    raise ValueError(f'tag_scheme must be one of {tagschemes.SCHEMES}')
  if 'document' in features:
    raise ValueError(
      'document context is a transform of the Dataset (two_passes.prepare; '
      'training.train(document=True)), not a feature to load'
    )
  splits = data_lib.load_splits(data_dir)
  if case_augment:
    splits['train'] = splits['train'] + case_copies(
      splits['train'], case_augment
    )
  char_vocab = None
  if 'chars' in features:
    features = tuple(f for f in features if f != 'chars')
    char_vocab = chars_lib.CharVocab.build(
      t for s in splits['train'] for t in s.tokens
    )
  file_tags = data_lib.check_tags(splits)
  file_scheme = tagschemes.file_scheme(s.tags for s in splits['train'])
  scheme = file_scheme if tag_scheme == 'file' else tag_scheme
  tags = tagschemes.tag_set(file_tags, scheme)
  vocabulary, L_init, coverage, pretrained = _vocabulary_and_vectors(
    splits, embeddings, vocab, embed_dim, min_count, seed
  )
  context, gazetteer = _gazetteer_context(splits, features, gazetteer_file)
  feature_vocab = None
  if features:
    feature_vocab = features_lib.FeatureVocab.build(
      splits['train'], features, affix_length, context['train']
    )

  def make(sents, values):
    if scheme != file_scheme:
      sents = [
        dataclasses.replace(s, tags=tuple(tagschemes.convert(s.tags, scheme)))
        for s in sents
      ]
    return vocab_lib.make_windows(
      sents, vocabulary, tags, window, feature_vocab, values, char_vocab
    )

  windows = {name: make(sents, context[name]) for name, sents in splits.items()}
  # A fixed, evenly spaced sample of training sentences for train-error curves.
  train = splits['train']
  picked = np.unique(np.linspace(0, len(train) - 1, TRAIN_SAMPLE).astype(int))
  splits['train_sample'] = [train[i] for i in picked]
  windows['train_sample'] = make(
    splits['train_sample'],
    {k: [v[i] for i in picked] for k, v in context['train'].items()},
  )
  ds = Dataset(
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
    char_vocab,
  )
  log_summary(ds, data_dir, file_tags, pretrained, embed_dim, log)
  return ds


def _vocabulary_and_vectors(
  splits, embeddings, vocab, embed_dim, min_count, seed
):
  """(the Vocab, initial L [V, d], coverage counts, the pretrained vectors
  or None) of load_dataset's arguments."""
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
  return vocabulary, L_init, coverage, pretrained


def _gazetteer_context(splits, features, gazetteer_file):
  """(split -> the per-sentence values of the gazetteer feature, the
  Gazetteer), or empty contexts and None without that feature."""
  context = {name: {} for name in splits}
  if 'gazetteer' not in features:
    return context, None
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
  return context, gazetteer


def log_summary(ds, data_dir, file_tags, pretrained, embed_dim, log):
  """The lines that say what a loaded Dataset holds."""
  shown = [n for n in ds.splits if n != 'train_sample']
  sizes = ', '.join(
    f'{n} {len(ds.splits[n]):,} sentences / {len(ds.windows[n]):,} windows'
    for n in shown
  )
  log(
    f'data {data_dir}: {sizes}; tags {" ".join(file_tags)} ({ds.file_scheme})'
  )
  if ds.tag_scheme != ds.file_scheme:
    log(f'training on {ds.tag_scheme.upper()} tags ({len(ds.tags)} classes)')
  if ds.features is not None:
    log(ds.features.describe())
  if ds.chars is not None:
    log(
      f'characters: {len(ds.chars) - 2} seen in training, each word spelled '
      f'by its first {chars_lib.MAX_LEN} (research/formulas/chars.py)'
    )
  if ds.gazetteer is not None:
    log(
      f'gazetteer: {len(ds.gazetteer):,} phrases (training sentences read '
      f'lists built without their fold, 1 of {gazetteer_lib.FOLDS})'
    )
  if note := data_lib.empty_tokens_note(ds.splits):
    log(note)
  source = pretrained.source if pretrained else f'random d={embed_dim}'
  cov = ', '.join(
    f'{n} {ds.coverage[f"{n}_token_coverage"]:.1f}%' for n in shown
  )
  log(
    f'vectors {source}: vocabulary {len(ds.vocab):,} words, '
    f'{ds.coverage["covered"]:,} with a pretrained vector '
    f'({ds.coverage["coverage"]:.1f}%); tokens covered: {cov}'
  )


def tags_by_sentence(tag_ids, sentences, tags):
  """Splits a flat [N] array of tag ids into per-sentence tag lists."""
  names = np.asarray(tags, dtype=object)[np.asarray(tag_ids)]
  ends = np.cumsum([len(s.tokens) for s in sentences])[:-1]
  return [list(part) for part in np.split(names, ends)]
