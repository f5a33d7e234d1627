"""Tagging with a trained model: load it, tag sentences, score a file.

`load` reads the model that experiments.train saved in its run directory; `tag`
gives one predicted tag per token; `evaluate_file` scores a CoNLL file with
conlleval's entity F1 (the same dict as a split of result.json). What
evaluate and predict write is research/evaluation/tag_output.py's.
"""

import dataclasses
from typing import Any

import numpy as np

from research import setup as setup_lib
from research import workdir as workdir_lib
from research.data import conll as data_lib
from research.data import dataset as dataset_lib
from research.data import features as features_lib
from research.data import gazetteer as gazetteer_lib
from research.data import tagschemes
from research.data import vocab as vocab_lib
from research.errors import UserError
from research.evaluation import metrics
from research.evaluation import novelty
from research.formulas import chars as chars_lib
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import document_context
from research.training import two_passes

# The decks' ambiguous names ("Paris -> Paris, France vs Paris Hilton;
# Hathaway -> Berkshire Hathaway vs Anne Hathaway") and their window example
# ("museums in Paris are amazing"), in sentences: context should decide.
DECK_EXAMPLES = (
  'Paris Hilton visited the Louvre in Paris .',
  'Museums in Paris are amazing .',
  'Anne Hathaway thanked Berkshire Hathaway .',
  'Warren Buffett runs Berkshire Hathaway from Omaha .',
  'Hathaway said the film opens in Paris on Friday .',
)


@dataclasses.dataclass(frozen=True)
class Model:
  """A trained model, as saved in a run directory.

  Attributes:
    params: The parameters (a flat dict of arrays; an ensemble's have a
      leading member axis).
    vocab: The `vocab.Vocab` that maps tokens to rows of params['L'].
    tags: The tag of each class id (in `tag_scheme`).
    config: The `model.ModelConfig`.
    objective: The training objective's research.formulas.objectives
      record (a sentence-level one decodes by Viterbi).
    decode: 'argmax' or 'viterbi'.
    tag_scheme: The scheme of `tags`; predictions are written in
      `file_scheme`, that of the training file.
    features: The research.data.features.FeatureVocab, or None.
    gazetteer: The research.data.gazetteer.Gazetteer of the gazetteer feature.
    chars: The research.formulas.chars.CharVocab of the character CNN, or None.
    o_bias: the decoding bias against O (research.setup.predict).
  """

  params: dict[str, np.ndarray]
  vocab: vocab_lib.Vocab
  tags: list[str]
  config: model_lib.ModelConfig
  objective: objectives.Objective = objectives.REGISTRY['xent']
  decode: str = 'argmax'
  tag_scheme: str = 'iob2'
  file_scheme: str = 'iob2'
  features: features_lib.FeatureVocab | None = None
  gazetteer: gazetteer_lib.Gazetteer | None = None
  chars: chars_lib.CharVocab | None = None
  o_bias: float = 0.0


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """A CoNLL file tagged by a model and scored against its tags.

  Attributes:
    sentences: The `data.Sentence`s of the file (their tags are the gold).
    predicted: The predicted tags of each sentence.
    scores: `metrics.as_dict` of the entity scores: overall 'precision',
      'recall', 'f1', counts, 'accuracy' and 'per_type' (percent); given the
      training entities, also 'unseen' and 'seen'
      (research/evaluation/novelty.py).
  """

  sentences: list[data_lib.Sentence]
  predicted: list[list[str]]
  scores: dict[str, Any]


def load(model_dir):
  """Loads the model an experiments.train run saved.

  Args:
    model_dir: The run's directory.

  Returns:
    The `Model`.

  Raises:
    UserError: `model_dir` is not a finished run directory.
  """
  return from_parts(*workdir_lib.load_model(model_dir))


def from_parts(params, vocab, tags, config):
  """The `Model` of what workdir.save_model writes (`load` reads them)."""
  features = gazetteer = None
  if 'features' in config:
    features = features_lib.FeatureVocab.from_json(config['features'])
  if 'gazetteer' in config:
    gazetteer = gazetteer_lib.Gazetteer.from_json(config['gazetteer'])
  scheme = config.get('file_scheme', 'iob2')
  return Model(
    params,
    vocab,
    tags,
    model_lib.ModelConfig(**config['model']),
    objective=_objective(config.get('train', {}).get('objective', 'xent')),
    decode=config.get('decode', 'argmax'),
    o_bias=config.get('o_bias', 0.0),
    tag_scheme=config.get('tag_scheme', scheme),
    file_scheme=scheme,
    features=features,
    gazetteer=gazetteer,
    chars=(
      chars_lib.CharVocab.from_json(config['chars'])
      if 'chars' in config
      else None
    ),
  )


def _objective(name):
  """The registry's record of a saved model's objective."""
  try:
    return objectives.get(name)
  except ValueError as e:
    raise UserError(
      f'the model was trained with objective {name!r}, which this code has '
      f'not registered ({e}); register it (docs/design.md) or use a model '
      'of a registered objective'
    ) from None


def tag(model, sentences):
  """Predicts one tag per token.

  Args:
    model: A `Model`.
    sentences: `data.Sentence`s; only their tokens are read.

  Returns:
    The predicted tags of each sentence, a list of lists of str.
  """
  if not sentences:
    return []
  # The labels of the windows are not used; any tag of the model will do.
  blank = [
    data_lib.Sentence(s.tokens, (model.tags[0],) * len(s.tokens))
    for s in sentences
  ]
  context = {}
  if model.gazetteer is not None:
    context['gazetteer'] = [model.gazetteer.values(s.tokens) for s in sentences]
  params, first_pass = two_passes.split_first_pass(model.params)
  lengths = [len(s.tokens) for s in sentences]

  def windows(features):
    return vocab_lib.make_windows(
      blank,
      model.vocab,
      model.tags,
      model.config.window,
      features,
      context,
      model.chars,
    )

  def predict(params, windows, o_bias=0.0):
    pred_N, _ = setup_lib.predict(
      params,
      windows,
      lengths,
      model.tags,
      model.tag_scheme,
      model.config,
      model.objective,
      model.decode,
      o_bias,
    )
    return pred_N

  if first_pass is None:
    pred_N = predict(params, windows(model.features), model.o_bias)
  else:
    # The document feature: the first pass's tags of the same word elsewhere
    # in the sentences' documents (all of them one document for plain text),
    # as a column of the first pass's windows (two_passes.prepare's).
    first_windows = windows(model.features.without('document'))
    values = document_context.values(
      sentences, predict(first_pass, first_windows), model.tags
    )
    pred_N = predict(
      params,
      two_passes.with_document_column(first_windows, model.features, values),
      model.o_bias,
    )
  tags = dataset_lib.tags_by_sentence(pred_N, sentences, model.tags)
  if model.tag_scheme != model.file_scheme:
    tags = [tagschemes.convert(t, model.file_scheme) for t in tags]
  return tags


def tag_text(model, lines):
  """Tags text: each non-blank line is a sentence of whitespace-split tokens.

  The lines are one document (for a model with document context).

  Args:
    model: A `Model`.
    lines: Lines of text.

  Returns:
    [(tokens, tags)] for each non-blank line: a tuple of str and a list of
    str.
  """
  sentences = [
    data_lib.Sentence(tuple(words), ('O',) * len(words))
    for words in (line.split() for line in lines)
    if words
  ]
  return [(s.tokens, tags) for s, tags in zip(sentences, tag(model, sentences))]


def entity_spans(tokens, tags):
  """'[Paris Hilton]/PER [Louvre]/LOC' for a tagged sentence ('(none)')."""
  spans = [f'[{" ".join(tokens[a:b])}]/{t}' for a, b, t in metrics.chunks(tags)]
  return ' '.join(spans) or '(none)'


def examples_markdown(model, sentences=DECK_EXAMPLES):
  """A table of example sentences, each its own document, and the entities
  the model finds."""
  parsed = [
    data_lib.Sentence(tuple(t.split()), ('O',) * len(t.split()), document=i)
    for i, t in enumerate(sentences)
  ]
  rows = [
    (' '.join(s.tokens), entity_spans(s.tokens, tags))
    for s, tags in zip(parsed, tag(model, parsed))
  ]
  lines = ['| sentence | entities found |', '|---|---|']
  lines += [f'| {a} | {b} |' for a, b in rows]
  return '\n'.join(lines) + '\n'


def read_sentences(path, require_tags=True, split=None):
  """Reads the sentences of a CoNLL file, across its documents.

  Args:
    path: The file (see `data.read_conll`).
    require_tags: If False, a file of tokens only is accepted.
    split: 'train', 'dev' or 'test': only the documents of that split of a
      single-file corpus (`data.split_documents`, the split training makes);
      None or 'all': every document.

  Returns:
    A list of `data.Sentence`s.

  Raises:
    UserError: The file is missing or malformed.
  """
  documents = data_lib.read_conll(path, require_tags=require_tags)
  if split not in (None, 'all'):
    documents = data_lib.split_documents(documents)[split]
  return [s for document in documents for s in document]


def evaluate(model, sentences, entities=None):
  """Tags sentences and scores the tags against theirs, like conlleval.

  Gold tags the model never predicts (unseen in its training data) are
  scored too: their chunks count as missed.

  Args:
    model: A `Model`.
    sentences: `data.Sentence`s whose tags are the gold.
    entities: The model's training entities (`novelty.Entities`), to score
      the unseen and the seen entities apart; None: not.

  Returns:
    The `Evaluation`.
  """
  predicted = tag(model, sentences)
  gold = [list(s.tags) for s in sentences]
  scores = metrics.as_dict(metrics.evaluate(gold, predicted))
  if entities is not None:
    tokens = [s.tokens for s in sentences]
    scores.update(novelty.scores(tokens, gold, predicted, entities))
  return Evaluation(list(sentences), predicted, scores)


def evaluate_file(model, path, split=None, entities=None):
  """Tags a CoNLL file and scores it against its tags (`evaluate`).

  Args:
    model: A `Model`.
    path: The CoNLL file, token first and tag last (see `data.read_conll`).
    split: Of a single-file corpus, the split to score (`read_sentences`).
    entities: The model's training entities, or None (`evaluate`).

  Returns:
    The `Evaluation`.

  Raises:
    UserError: The file is missing or malformed.
  """
  return evaluate(model, read_sentences(path, split=split), entities)
