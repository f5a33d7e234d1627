"""Window classifiers as plain functions over dicts of arrays (decks' notation).

A window of half-width k is 2k+1 word ids. Each word contributes its word vector
(a row of the lookup table `L`, d columns) and its casing vector (a row of
`L_case`), so the window vector is the concatenation

  x = [L[w_{i-k}]; L_case[c_{i-k}]; ...; L[w_{i+k}]; L_case[c_{i+k}]]

of size D = (2k+1)(d + d_case). Matrices act on column vectors as in the decks
(`W` is [C, D], `f = W x + c`); batched code computes `x_NxD @ W.T`.

| model    | forward                                   | parameters            |
|----------|-------------------------------------------|-----------------------|
| softmax  | f = W x + c                             | L, L_case, W, c       |
| hidden   | a = g(V x + b), f = W a + c             | L, L_case, V, b, W, c |
| scorer   | s = U . g(W x + b) (one score, no softmax) | L, L_case, W, b, U |
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from research.formulas import chars as chars_lib
from research.formulas import dilated
from research.training import parallel

MODELS = ('softmax', 'hidden', 'dilated')

NONLINEARITIES = {
  'tanh': jnp.tanh,
  'relu': jax.nn.relu,
  'sigmoid': jax.nn.sigmoid,
  'hardtanh': lambda z: jnp.clip(z, -1.0, 1.0),
}


class ModelConfig(NamedTuple):
  """Static (hashable) description of a classifier."""

  model: str = 'hidden'  # one of MODELS
  nonlinearity: str = 'tanh'  # a key of NONLINEARITIES
  window: int = 2  # half-width k
  hidden: int = 300
  dropout: float = 0.0  # on x and on the hidden layer, training only
  feature_dim: int = 20  # columns of L_feat (research.data.features), if any
  char_dim: int = 16  # columns of L_char (research.formulas.chars), if any
  char_filters: int = 30  # F, the character CNN's filters: features per word
  char_width: int = 3  # w, the filters' width in characters (odd)
  # dilated: n layers of dilations 1, 2, ..., 2^(n-1) over a sentence's
  # hidden vectors (research.formulas.dilated), the block applied this often
  dilation_layers: int = 3
  block_repeats: int = 1


def init_params(
  key,
  cfg,
  *,
  vocab_size,
  num_classes,
  embed_dim=50,
  num_casings=8,
  case_dim=5,
  embeddings=None,
  feature_rows=0,
  feature_kinds=0,
  feature_dim=0,
  char_rows=0,
):
  """Initial parameters for `cfg.model` (or 'scorer', the deck's window scorer).

  Args:
    key: a PRNG key.
    cfg: ModelConfig.
    vocab_size: rows of L.
    num_classes: C (ignored for the scorer, which has one output).
    embed_dim: d, used when `embeddings` is None.
    num_casings: rows of L_case.
    case_dim: columns of L_case (0 disables the casing feature).
    embeddings: optional [vocab_size, d] initial word vectors.
    feature_rows: rows of L_feat (research.data.features); 0 for none.
    feature_kinds: F, the L_feat rows each word looks up.
    feature_dim: columns of L_feat.
    char_rows: rows of L_char (research.formulas.chars.CharVocab); 0 for no
      character CNN (else cfg.char_dim, cfg.char_filters, cfg.char_width).

  Returns:
    A dict of float32 arrays.
  """
  d = embed_dim if embeddings is None else np.shape(embeddings)[1]
  width = 2 * cfg.window + 1
  if not feature_rows:
    feature_kinds = feature_dim = 0
  char_features = cfg.char_filters if char_rows else 0
  D = width * (d + case_dim + feature_kinds * feature_dim + char_features)
  shapes = [('L_case', (num_casings, case_dim))]
  if embeddings is None:
    shapes.append(('L', (vocab_size, embed_dim)))
  if feature_rows:
    shapes.append(('L_feat', (feature_rows, feature_dim)))
  if cfg.model in ('hidden', 'scorer', 'dilated'):
    shapes.append(('k_1', (cfg.hidden, D)))
    shapes.append(
      ('k_2', (1 if cfg.model == 'scorer' else num_classes, cfg.hidden))
    )
  raw = jax.device_get(_draws(key, tuple(shapes)))
  # Scaled here, one product each, as the eager draws were: the same floats.
  params = {
    'L': (
      0.1 * raw['L']
      if embeddings is None
      else np.asarray(embeddings, np.float32)
    ),
    'L_case': 0.1 * raw['L_case'],
  }
  if feature_rows:
    params['L_feat'] = 0.1 * raw['L_feat']
  if char_rows:
    params.update(
      chars_lib.init_params(
        jax.random.fold_in(key, 6),
        char_rows,
        cfg.char_dim,
        cfg.char_filters,
        cfg.char_width,
      )
    )
  if cfg.model == 'softmax':
    params['W'] = np.zeros((num_classes, D), np.float32)
    params['c'] = np.zeros((num_classes,), np.float32)
  elif cfg.model in ('hidden', 'dilated'):
    params['V'] = _glorot(raw['k_1'])
    params['b'] = np.zeros((cfg.hidden,), np.float32)
    params['W'] = _glorot(raw['k_2'])
    params['c'] = np.zeros((num_classes,), np.float32)
    if cfg.model == 'dilated':
      params.update(
        dilated.init_params(
          jax.random.fold_in(key, 8), cfg.dilation_layers, cfg.hidden
        )
      )
  elif cfg.model == 'scorer':
    params['W'] = _glorot(raw['k_1'])
    params['b'] = np.zeros((cfg.hidden,), np.float32)
    params['U'] = _glorot(raw['k_2'])[0]
  else:
    raise ValueError(f'unknown model {cfg.model!r}')
  return jax.tree.map(jnp.asarray, params)


@functools.partial(jax.jit, static_argnames='shapes')
def _draws(key, shapes):
  """init_params' random draws, unscaled, as one compiled program (a dozen
  small ones took 0.2 s of a run): N(0, 1) for the tables, U(-1, 1) for
  the Glorot matrices (keys 'k_1', 'k_2')."""
  k_l, k_case, k_1, k_2 = jax.random.split(key, 4)
  keys = {
    'L': k_l,
    'L_case': k_case,
    'L_feat': jax.random.fold_in(key, 5),
    'k_1': k_1,
    'k_2': k_2,
  }
  out = {}
  for name, shape in shapes:
    if name.startswith('k_'):
      out[name] = jax.random.uniform(keys[name], shape, jnp.float32, -1)
    else:  # L_case in the default float type, as it always was
      dtype = None if name == 'L_case' else jnp.float32
      out[name] = jax.random.normal(keys[name], shape, dtype)
  return out


def _glorot(u_AxB):
  """jax.nn.initializers.glorot_uniform's matrix from its U(-1, 1) draw:
  u * sqrt(3 variance), variance = 2 / (fan_in + fan_out), in float32."""
  variance = np.float32(1.0 / (sum(u_AxB.shape) / 2))
  return u_AxB * np.sqrt(np.float32(3) * variance)


def window_vectors(L, L_case, words_NxK, casing_NxK, L_feat=None, feats=None):
  """The window vector x: word and casing vectors (and the rows of L_feat
  of each word's features [N, K, F], when given) concatenated, [N, D]."""
  feat = None if L_feat is None else L_feat[feats]
  return concat_window(L[words_NxK], L_case[casing_NxK], feat)


def concat_window(
  vectors_NxKxd, case_vectors_NxKxe, feat_NxKxFxg=None, char_NxKxH=None
):
  """Concatenates per-word vectors into window vectors [N, K*(d+e+F*g+H)]:
  slot j is [L[w_j]; L_case[c_j]; L_feat[f_j1]; ...; L_feat[f_jF]; h_j],
  h_j the word's H character features (research.formulas.chars), when given."""
  parts = [vectors_NxKxd, case_vectors_NxKxe]
  if feat_NxKxFxg is not None:
    N, K = feat_NxKxFxg.shape[:2]
    parts.append(feat_NxKxFxg.reshape(N, K, -1))
  if char_NxKxH is not None:
    parts.append(char_NxKxH)
  both_NxKxF = jnp.concatenate(parts, axis=-1)
  return both_NxKxF.reshape(both_NxKxF.shape[0], -1)


def keep_mask(key, shape, rate, data_devices=1):
  """A dropout mask: True with probability q = round(256 (1 - rate)) / 256.

  Each random 32-bit word gives four bytes (four rows of the mask), each
  compared with 256 q: a quarter of the random numbers that
  `jax.random.bernoulli` draws, where drawing them took a large part of a
  training step on a CPU. Returns (mask, q).
  """
  rows, rest = shape[0], tuple(shape[1:])
  shifts = (jnp.arange(4, dtype=jnp.uint32) * 8).reshape(
    (4,) + (1,) * len(shape)
  )

  def draw(n):
    words = jax.random.bits(key, (-(-n // 4),) + rest, jnp.uint32)
    return ((words[None] >> shifts) & 0xFF).reshape((-1,) + rest)[:n]

  # In a data-parallel step, this device's rows of the global batch's mask.
  bytes_ = parallel.shard_rows(draw, rows, data_devices)
  threshold = round(256 * (1.0 - rate))
  return bytes_ < threshold, threshold / 256


def _dropout(key, x, rate, data_devices):
  """Inverted dropout: x / q where kept (`keep_mask`), 0 elsewhere."""
  keep, q = keep_mask(key, x.shape, rate, data_devices)
  return jnp.where(keep, x / q, 0.0)


def class_scores(params, x_NxD, cfg, key=None, data_devices=1, layout=None):
  """Unnormalized class scores f [N, C] from window vectors.

  softmax: f = W x + c.  hidden: f = W g(V x + b) + c.  dilated: f = W h + c,
  h the dilated encoder (research.formulas.dilated) of the hidden vectors
  g(V x + b) of the windows of B packed rows of T positions (N = B T;
  layout: their (starts_BxT, mask_BxT)).
  Dropout (inverted) on x and on the hidden layer (the encoder's output)
  when `key` is given; in a step whose batch is split across
  `data_devices`, each device's rows of the global batch's masks.
  """
  train = key is not None and cfg.dropout > 0
  if train:
    key_x, key_a = jax.random.split(key)
    x_NxD = _dropout(key_x, x_NxD, cfg.dropout, data_devices)
  if cfg.model == 'softmax':
    return x_NxD @ params['W'].T + params['c']
  g = NONLINEARITIES[cfg.nonlinearity]
  a_NxH = g(x_NxD @ params['V'].T + params['b'])
  if cfg.model == 'dilated':
    if layout is None:
      raise ValueError('the dilated model scores the words of packed rows')
    a_NxH, _ = dilated.encode_rows(params, a_NxH, layout, cfg.block_repeats)
  if train:
    a_NxH = _dropout(key_a, a_NxH, cfg.dropout, data_devices)
  return a_NxH @ params['W'].T + params['c']


def window_score(params, x_NxD, nonlinearity='tanh'):
  """The deck's window scorer s = U . g(W x + b), one scalar per window [N]."""
  g = NONLINEARITIES[nonlinearity]
  return g(x_NxD @ params['W'].T + params['b']) @ params['U']


def num_flops_per_window(cfg, input_dim, num_classes):
  """Multiply-add FLOPs (2 per MAC) of forward + backward for one window.

  Backward of a matmul costs two matmuls of the same size (grad w.r.t. the
  weights and w.r.t. the input), so training is 3x the forward matmuls.
  """
  if cfg.model == 'softmax':
    forward = 2 * input_dim * num_classes
  else:
    forward = 2 * input_dim * cfg.hidden + 2 * cfg.hidden * num_classes
  if cfg.model == 'dilated':
    H = cfg.hidden
    forward += 2 * 3 * H * H * cfg.dilation_layers * cfg.block_repeats
  return 3 * forward


def count_params(params):
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
