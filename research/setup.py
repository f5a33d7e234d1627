"""A run resolved once: what a model is trained and scored with.

`resolve` turns a Dataset and the configurations into a frozen `Setup`: the
objective's record (research.formulas.objectives; looked up here, once, by
its name), the task (shuffled windows, or whole sentences packed into rows:
decided here, once, from one set of inputs) and the decoding. The training
façade (research.training.facade), scoring (research.evaluation.scoring),
document context (research.training.two_passes) and the studies take a Setup
and read these choices; none of them makes one again. `predict` is the one
prediction dispatch, shared with tagging a saved model
(research.evaluation.tagging).
"""

import dataclasses

import jax
import numpy as np

from research.data import dataset as dataset_lib
from research.data import tagschemes
from research.formulas import model as model_lib
from research.formulas import objectives
from research.training import classifier
from research.training import prediction
from research.training import sequence

DECODES = ('argmax', 'viterbi')


@dataclasses.dataclass(frozen=True, eq=False)
class Setup:
  """A Dataset with every choice of a run made.

  Attributes:
    ds: the research.data.dataset.Dataset.
    model_cfg: the research.formulas.model.ModelConfig.
    cfg: the research.training.classifier.TrainConfig (cfg.objective is
      the name that config.json keeps; `objective` is its record).
    objective: the research.formulas.objectives.Objective.
    decode: 'argmax' or 'viterbi'.
    members: the models trained as one (an ensemble: their scores
      averaged); 1 for a single model or a sweep's configurations.
    sentences: whether training reads whole sentences
      (research.training.sequence) rather than shuffled windows
      (research.training.classifier): `trains_on_sentences`.
  """

  ds: dataset_lib.Dataset
  model_cfg: model_lib.ModelConfig
  cfg: classifier.TrainConfig
  objective: objectives.Objective
  decode: str
  members: int
  sentences: bool

  def init_params(self, seed=0):
    """The initial parameters of seed `seed` (`init_params`; with the
    transitions of a sentence-level objective)."""
    return init_params(
      self.ds, self.model_cfg, seed, transitions=self.objective.sentence_level
    )

  def task_and_data(self):
    """(task, device data, n examples, the task's stats) of the training
    split: packed sentence rows (research.training.sequence) or windows."""
    train = self.ds.windows['train']
    if self.sentences:
      lengths = sequence.sentence_lengths(self.ds.splits['train'])
      return sequence.task_and_data(
        train, lengths, self.model_cfg, self.cfg, self.objective
      )
    task = classifier.ClassifierTask(self.model_cfg, self.cfg, self.objective)
    return task, classifier.device_data(train), len(train.labels), {}

  def predict(self, params, split, o_bias=0.0):
    """(predicted class ids [N], per-window losses [N] or None) of a split
    of the Dataset (`predict_windows`)."""
    return self.predict_biases(params, split, (o_bias,))[0]

  def predict_biases(self, params, split, biases):
    """`predict` of a split decoded with each bias against O of `biases`
    (the model's scores computed once: `predict_each`)."""
    ds = self.ds
    lengths = sequence.sentence_lengths(ds.splits[split])
    return self.predict_windows(params, ds.windows[split], lengths, biases)

  def predict_windows(self, params, windows, lengths, biases=(0.0,)):
    """`predict_each` of windows of sentences of `lengths` words, tagged
    with the Dataset's tags: [(ids, losses or None)] per bias."""
    return predict_each(
      params,
      windows,
      lengths,
      self.ds.tags,
      self.ds.tag_scheme,
      self.model_cfg,
      self.objective,
      self.decode,
      biases,
    )

  def with_dataset(self, ds, members=None):
    """The same run on another Dataset (document context's, with its
    column; a first pass's half), of `members` members (default: as many),
    resolved anew: the task may change with the features."""
    members = self.members if members is None else members
    return resolve(ds, self.model_cfg, self.cfg, self.decode, members)

  def on_sentences(self):
    """The same run trained on whole sentences (a sweep trains every
    objective on the same examples: sentences when any asks for them)."""
    return dataclasses.replace(self, sentences=True)

  def config_json(self, o_bias=0.0):
    """What config.json holds to tag new text with a model (tagging.load)."""
    ds = self.ds
    out = {
      'model': self.model_cfg._asdict(),
      'train': self.cfg._asdict(),
      'decode': self.decode,
      'o_bias': o_bias,
      'tag_scheme': ds.tag_scheme,
      'file_scheme': ds.file_scheme,
    }
    if ds.features is not None:
      out['features'] = ds.features.to_json()
    if ds.gazetteer is not None:
      out['gazetteer'] = ds.gazetteer.to_json()
    if ds.chars is not None:
      out['chars'] = ds.chars.to_json()
    return out


def init_params(ds, model_cfg, seed=0, num_classes=None, transitions=False):
  """model.init_params for a Dataset: its vocabulary, tags, features and
  initial L, and zero transitions A, start, end with `transitions`.

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
    char_rows=len(ds.chars) if ds.chars is not None else 0,
  )
  if transitions:
    params = sequence.init_transitions(params, C)
  return params


def resolve(ds, model_cfg, cfg, decode='argmax', members=1):
  """The Setup of a run: the objective named by cfg.objective looked up,
  and the task chosen (`trains_on_sentences`).

  Raises:
    ValueError: an unknown objective or decoding.
  """
  if decode not in DECODES:
    raise ValueError(f'decode must be one of {DECODES}, got {decode!r}')
  objective = objectives.get(cfg.objective)
  sentences = trains_on_sentences(
    ds, model_cfg, cfg, objective, decode, members
  )
  return Setup(ds, model_cfg, cfg, objective, decode, members, sentences)


def trains_on_sentences(ds, model_cfg, cfg, objective, decode, members):
  """Whether training needs whole sentences (research.training.sequence)
  rather than shuffled windows: the dilated model (it reads a sentence's
  words), a sentence-level objective, features or characters, IOBES tags,
  word dropout, Viterbi decoding or an ensemble."""
  return bool(
    model_cfg.model == 'dilated'
    or objective.sentence_level
    or ds.features is not None
    or ds.chars is not None
    or ds.tag_scheme != ds.file_scheme
    or cfg.word_dropout > 0
    or decode == 'viterbi'
    or members > 1
  )


def window_argmax(params, windows, model_cfg, objective, decode, o_bias):
  """Whether a prediction is the argmax of each window's class scores alone
  (classifier.predict, which gives each window's loss too): a window model
  (not the dilated one) with a window-level objective decoded by argmax, no
  features or characters, one model (not an ensemble's stacked members)
  and no bias against O."""
  return (
    model_cfg.model != 'dilated'
    and decode == 'argmax'
    and not objective.sentence_level
    and windows.feats is None
    and windows.chars is None
    and np.ndim(params['L']) == 2
    and not o_bias
  )


def predict(
  params, windows, lengths, tags, scheme, model_cfg, objective, decode, o_bias
):
  """(predicted class ids [N], per-window losses [N] or None) of windows
  of sentences of `lengths` words.

  A sentence-level objective decodes by Viterbi with its transitions;
  decode='viterbi' decodes a window-level model's scores (log-probabilities
  for cross-entropy) by Viterbi too. Both forbid transitions the tag scheme
  does not allow (tagschemes.valid_transitions). Params with a leading
  member axis are an ensemble: their scores are averaged. o_bias is taken
  from every word's score of `O` before decoding (prediction.predict): a
  positive bias tags more words as entities (recall for precision). The
  losses come with `window_argmax`'s predictions only.
  """
  return predict_each(
    params, windows, lengths, tags, scheme, model_cfg, objective, decode,
    (o_bias,),
  )[0]  # fmt: skip


def predict_each(
  params, windows, lengths, tags, scheme, model_cfg, objective, decode, biases
):
  """[`predict` with each o_bias of `biases`]: the class scores computed
  once (prediction.scores) and decoded once per bias (prediction.decode); a
  bias of 0 of a `window_argmax` model takes classifier.predict, which
  gives the losses."""
  out = {}
  if 0 in biases and window_argmax(
    params, windows, model_cfg, objective, decode, 0.0
  ):
    out[0.0] = classifier.predict(params, windows, model_cfg, objective)
  rest = [b for b in biases if b not in out]
  if rest:
    trans = None
    if objective.sentence_level or decode == 'viterbi':
      allowed = tagschemes.valid_transitions(tags, scheme)
      trans = prediction.decode_transitions(
        params, len(tags), allowed, objective
      )
    T = sequence.row_length(lengths)
    f_NxC = prediction.scores(
      params, windows, lengths, model_cfg, objective.log_probs, T
    )
    for b in rest:
      pred = prediction.decode(
        f_NxC, lengths, trans, T=T, bias_C=o_bias_C(tags, b)
      )
      out[b] = (pred, None)
  return [out[b] for b in biases]


def o_bias_C(tags, o_bias):
  """The bias added to each class's score: -o_bias for O, or None."""
  if not o_bias or 'O' not in tags:
    return None
  return -o_bias * (np.asarray(tags) == 'O').astype(np.float32)
