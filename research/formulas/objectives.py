"""The objectives: one registry, one frozen record per objective.

Every training objective of the window classifiers is named here, once, with
what the rest of the code needs to know about it. The formulas live beside their
derivations (research.formulas.losses and research.formulas.crf for the losses,
research.formulas.losses and research.formulas.crf for their hand-derived
gradients too); this module only gathers them, so entry points, studies and
tests take the names from `NAMES` and the functions from `get`.

Two levels (docs/design.md, "Objectives"):

* 'window': one loss per word's window on its class scores,
  loss(f_NxC, y_N) -> J_N, and the error signal by hand,
  grad(f_NxC, y_N) -> (J_N, dJ/df_NxC) (research.formulas.losses);
* 'sentence': one loss per packed row of sentences (research.formulas.crf's
  layout), loss(f_BxTxC, tags_BxT, mask_BxT, starts_BxT, trans) -> J_B, and
  grad(same) -> (J_B, dJ/df_BxTxC, crf.Transitions of dJ/d(A, start, end)).

The window scorer (research.training.window_scorer, s = U . g(W x + b), one
scalar per window) is a different model with objectives of a different signature
(on scalar scores, not class scores): they are the second, separate table
`SCORER_REGISTRY`, so that they never pass for a classifier's objective.

Look-ups read the registry when called (`get`, `names`), so a new objective
`register`ed at run time is trained, swept and gradient-checked like these,
and a test may put a deliberately wrong record in its place
(`dataclasses.replace`). docs/design.md has the recipe for a new one.

This module imports research.formulas.losses and research.formulas.crf (the
formulas and their hand-derived gradients); research.formulas.manual_grads,
which backpropagates an objective's error signal through the models, imports
this one."""

from collections.abc import Callable
import dataclasses

from research.formulas import crf
from research.formulas import losses

LEVELS = ('window', 'sentence')


@dataclasses.dataclass(frozen=True)
class Objective:
  """One objective of the window classifiers.

  Attributes:
    name: the name flags and configs use.
    level: 'window' or 'sentence' (see the module docstring).
    loss: the loss, J per window (window) or per row (sentence).
    grad: its hand-derived gradient (the error signal dJ/df, and for a
      sentence-level objective dJ/d(A, start, end)), with the loss.
    log_probs: Viterbi decoding of a window-level model reads
      log softmax(f) rather than f (true only where f are logits of
      probabilities: cross-entropy).
    doc: the formula, one line.
    kinks: where the loss is not differentiable, so that the gradient
      check's random problems keep away from it
      (research.formulas.derivation_problems): None (smooth), 'hinge' (a
      window-level hinge on class scores, at zero and at ties of the best
      wrong class) or 'viterbi' (a max over tag paths, at ties of the
      cost-augmented Viterbi).
  """

  name: str
  level: str
  loss: Callable
  grad: Callable
  log_probs: bool
  doc: str
  kinks: str | None = None

  @property
  def sentence_level(self):
    """Whether it scores tag paths (needs transitions A, start, end)."""
    return self.level == 'sentence'


@dataclasses.dataclass(frozen=True)
class ScorerObjective:
  """One objective of the window scorer (research.training.window_scorer).

  Attributes:
    name: the name its config uses.
    loss: J per true window, from scalar window scores: margin
      (s_N, s_corrupt_NxM) -> J_N; logistic (s_N, y_N) -> J_N.
    grad: its hand-derived gradient w.r.t. the scores, or None (trained
      by autodiff only).
    doc: the formula, one line.
  """

  name: str
  loss: Callable
  grad: Callable | None
  doc: str


REGISTRY = {
  'xent': Objective(
    'xent',
    'window',
    losses.cross_entropy,
    losses.cross_entropy_delta,
    True,
    'cross-entropy J = -log softmax(f)_y',
  ),
  'max_margin': Objective(
    'max_margin',
    'window',
    losses.multiclass_margin,
    losses.multiclass_margin_delta,
    False,
    'multiclass max-margin J = max(0, 1 + max_{c != y} f_c - f_y)',
    kinks='hinge',
  ),
  'crf': Objective(
    'crf',
    'sentence',
    crf.crf_loss,
    crf.crf_grads,
    False,
    'CRF / SLL J = log sum_y exp S(y) - S(y_gold)',
  ),
  'struct_margin': Objective(
    'struct_margin',
    'sentence',
    crf.struct_margin_loss,
    crf.struct_margin_grads,
    False,
    'structured margin J = max_y [S(y) + Hamming(y, y_gold)] - S(y_gold)',
    kinks='viterbi',
  ),
}

KINKS = (None, 'hinge', 'viterbi')


def register(objective):
  """Adds `objective` (an Objective) to the registry, under its name.

  Raises:
    ValueError: the name is taken, or the level or kinks are unknown.
  """
  if objective.name in REGISTRY:
    raise ValueError(f'objective {objective.name!r} is registered already')
  if objective.level not in LEVELS or objective.kinks not in KINKS:
    raise ValueError(
      f'objective {objective.name!r}: level must be one of {LEVELS} and '
      f'kinks one of {KINKS}'
    )
  REGISTRY[objective.name] = objective
  return objective


def names(level=None):
  """The registered objectives' names (of `level` when given), in the
  order they were registered."""
  return tuple(n for n, o in REGISTRY.items() if level in (None, o.level))


def records(level=None):
  """The registered objectives (of `level` when given), in the order they
  were registered."""
  return tuple(o for o in REGISTRY.values() if level in (None, o.level))


def describe():
  """Each objective's name and formula, for help texts."""
  return '; '.join(f'{o.name}: {o.doc}' for o in REGISTRY.values())


SCORER_REGISTRY = {
  'margin': ScorerObjective(
    'margin',
    losses.window_margin,
    losses.window_margin_delta,
    "the deck's window max-margin J = sum_m max(0, 1 - s + s_c,m)",
  ),
  'logistic': ScorerObjective(
    'logistic',
    losses.logistic_loss,
    None,
    'logistic J = -log sigma(s) if y else -log(1 - sigma(s))',
  ),
}

SCORER_NAMES = tuple(SCORER_REGISTRY)


def get(name, level=None):
  """The Objective called `name` (of `level`, 'window' or 'sentence', when
  given).

  Raises:
    ValueError: no such objective (or not of that level); the message
      names the valid choices.
  """
  if level is not None and level not in LEVELS:
    raise ValueError(f'level must be one of {LEVELS}, got {level!r}')
  choices = names(level)
  objective = REGISTRY.get(name)
  if objective is None or (level is not None and objective.level != level):
    kind = '' if level is None else f'{level}-level '
    raise ValueError(
      f'unknown {kind}objective {name!r}; choose one of {", ".join(choices)}'
    )
  return objective


def get_scorer(name):
  """The ScorerObjective called `name`.

  Raises:
    ValueError: no such objective; the message names the valid choices.
  """
  objective = SCORER_REGISTRY.get(name)
  if objective is None:
    raise ValueError(
      f'unknown window-scorer objective {name!r}; '
      f'choose one of {", ".join(SCORER_REGISTRY)}'
    )
  return objective
