"""The window classifier as a flax NNX module, for composing into flax models.

The project's models are plain functions over dicts of arrays
(`research.formulas.model`); training, manual gradients and checkpoints all
speak that dict. This file wraps the same dict in a `flax.nnx.Module` for users
who build larger flax models around the classifier (a head on the class scores,
a CRF layer, an ensemble) and want its parameters to be ordinary flax state:
seen by `nnx.grad`, `nnx.Optimizer`, `nnx.state` and `nnx.split`.

Why NNX: it is flax's current API (Linen, `flax.linen`, is the older one,
kept for existing code). An NNX module holds its parameters as attributes
(`nnx.Param`), so a pure-dict model maps onto it one array to one attribute
with no `init`/`apply` indirection, and `nnx.state(module, nnx.Param)` has the
same keys as the dict.

There is one implementation of the math: `WindowClassifier.__call__` reads the
arrays out of its `nnx.Param`s and calls `model.window_vectors` and
`model.class_scores`, so its scores (and, by autodiff, its gradients) are those
of the pure functions. `WindowClassifier.to_params()` gives
the dict back for the project's plain-dict code (prediction,
`research.workdir.save_model`).

Dropout: `__call__` takes an optional `rngs` (an `nnx.Rngs`, drawn from its
'dropout' stream, or a raw PRNG key) and passes the key to
`model.class_scores`, which applies inverted dropout of rate
`model_cfg.dropout` only when a key is given and the rate is positive. Without
`rngs` the call is deterministic (inference), whatever the rate.

Example:

  clf = WindowClassifier.init(nnx.Rngs(0), cfg, vocab_size=V, num_classes=C)
  f_NxC = clf(words_NxK, casing_NxK)
  params = clf.to_params()  # == the dict model.init_params would give
"""

from flax import nnx

from research.formulas import model as model_lib

# The parameter keys of each classifier, in `model.init_params` order.
PARAM_KEYS = {
  'softmax': ('L', 'L_case', 'W', 'c'),
  'hidden': ('L', 'L_case', 'V', 'b', 'W', 'c'),
}


def _check_params(params, cfg):
  """Raises ValueError unless `params` fits `cfg` (keys and shapes)."""
  if cfg.model not in PARAM_KEYS:
    raise ValueError(
      f'WindowClassifier supports models {tuple(PARAM_KEYS)}, got '
      f'{cfg.model!r} (the window scorer has no class scores)'
    )
  if cfg.model == 'hidden' and cfg.nonlinearity not in model_lib.NONLINEARITIES:
    raise ValueError(
      f'unknown nonlinearity {cfg.nonlinearity!r}; expected '
      f'one of {tuple(model_lib.NONLINEARITIES)}'
    )
  expected = set(PARAM_KEYS[cfg.model])
  if set(params) != expected:
    raise ValueError(
      f'{cfg.model!r} parameters need keys {sorted(expected)}, '
      f'got {sorted(params)}'
    )
  shapes = {name: tuple(params[name].shape) for name in params}
  if len(shapes['L']) != 2 or len(shapes['L_case']) != 2:
    raise ValueError(f'L and L_case must be matrices, got {shapes}')
  D = (2 * cfg.window + 1) * (shapes['L'][1] + shapes['L_case'][1])
  C = shapes['c'][0] if len(shapes['c']) == 1 else None
  want = {'c': (C,)}
  if cfg.model == 'softmax':
    want['W'] = (C, D)
  else:
    H = cfg.hidden
    want.update(V=(H, D), b=(H,), W=(C, H))
  for name, shape in want.items():
    if shapes[name] != shape:
      raise ValueError(
        f'{name} has shape {shapes[name]}, expected {shape} for {cfg} '
        f'(window vectors of size D={D}; matrices act on column vectors, '
        'W is [C, D] or [C, hidden])'
      )


class WindowClassifier(nnx.Module):
  """Softmax or one-hidden-layer window classifier; one `nnx.Param` per array.

  Attributes are named after the keys of the parameter dict ('L', 'L_case',
  'V', 'b', 'W', 'c'), so `nnx.to_pure_dict(nnx.state(clf, nnx.Param))` equals
  `clf.to_params()`. `model_cfg` is kept as static (non-array) state.
  """

  def __init__(self, params, model_cfg):
    """Wraps a parameter dict as returned by `model.init_params`.

    Args:
      params: dict of arrays with the keys of `PARAM_KEYS[model_cfg.model]`;
        they are stored as given (no copy, no dtype cast).
      model_cfg: a `model.ModelConfig` with model 'softmax' or 'hidden'.

    Raises:
      ValueError: if the keys or shapes do not fit `model_cfg`.
    """
    _check_params(params, model_cfg)
    self.model_cfg = model_cfg
    self.param_keys = tuple(params)  # the caller's order, for to_params
    for name in self.param_keys:
      setattr(self, name, nnx.Param(params[name]))

  @classmethod
  def from_params(cls, params, model_cfg):
    """Same as the constructor."""
    return cls(params, model_cfg)

  @classmethod
  def init(
    cls, rngs, model_cfg, vocab_size, num_classes, embeddings=None, **kwargs
  ):
    """A fresh classifier initialized by `model.init_params`.

    Args:
      rngs: an `nnx.Rngs` (its 'params' stream is drawn once) or a PRNG key.
      model_cfg: a `model.ModelConfig` with model 'softmax' or 'hidden'.
      vocab_size: rows of L.
      num_classes: C.
      embeddings: optional [vocab_size, d] initial word vectors.
      **kwargs: the other keywords of `model.init_params` (embed_dim,
        num_casings, case_dim).

    Returns:
      A WindowClassifier whose `to_params()` equals
      `model.init_params(key, model_cfg, ...)` for the same key.
    """
    key = rngs.params() if isinstance(rngs, nnx.Rngs) else rngs
    params = model_lib.init_params(
      key,
      model_cfg,
      vocab_size=vocab_size,
      num_classes=num_classes,
      embeddings=embeddings,
      **kwargs,
    )
    return cls(params, model_cfg)

  def to_params(self):
    """The plain parameter dict, keys in the order the constructor got them."""
    return {name: getattr(self, name)[...] for name in self.param_keys}

  def __call__(self, words_NxK, casing_NxK, rngs=None):
    """Class scores f [N, C] of N windows of K = 2k+1 word and casing ids.

    Args:
      words_NxK: int word ids.
      casing_NxK: int casing ids.
      rngs: None (deterministic), an `nnx.Rngs` (a key is drawn from its
        'dropout' stream) or a PRNG key; used only if model_cfg.dropout > 0.

    Returns:
      model.class_scores(params, model.window_vectors(...), model_cfg, key).
    """
    if isinstance(rngs, nnx.Rngs):
      key = rngs.dropout() if self.model_cfg.dropout > 0 else None
    else:
      key = rngs
    params = self.to_params()
    x_NxD = model_lib.window_vectors(
      params['L'], params['L_case'], words_NxK, casing_NxK
    )
    return model_lib.class_scores(params, x_NxD, self.model_cfg, key)
