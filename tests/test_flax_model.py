"""Tests for research.formulas.flax_model: the NNX module is the pure functions.

Scores and gradients of `WindowClassifier` are compared with
`model.class_scores(params, model.window_vectors(...))` and `jax.grad` of the
pure loss, leaf by leaf; `to_params()` round-trips the dict; the module trains
inside another NNX module; and a wrong parameter does change the outputs, so
the comparisons can fail. Tiny random shapes, no data files.
"""

import zlib

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from research.formulas import flax_model
from research.formulas import model as model_lib
from research.formulas import objectives

VOCAB, EMBED_DIM, NUM_CASINGS, CASE_DIM = 7, 3, 4, 2
NUM_CLASSES = 4
N = 6
CONFIGS = {
  'softmax': model_lib.ModelConfig(model='softmax', window=1, hidden=4),
  'hidden_tanh': model_lib.ModelConfig(
    model='hidden', nonlinearity='tanh', window=1, hidden=NUM_CLASSES
  ),
  'hidden_relu': model_lib.ModelConfig(
    model='hidden', nonlinearity='relu', window=1, hidden=NUM_CLASSES
  ),
  'hidden_hardtanh': model_lib.ModelConfig(
    model='hidden', nonlinearity='hardtanh', window=2, hidden=5
  ),
}
xent = objectives.get('xent').loss


def _rng(*parts):
  """A generator seeded by the name of what it is for."""
  return np.random.default_rng(zlib.crc32('/'.join(map(str, parts)).encode()))


def _params(cfg, tag, dtype=np.float32):
  """Random (all nonzero) parameters with init_params' keys and shapes."""
  shapes = jax.eval_shape(
    lambda key: model_lib.init_params(
      key,
      cfg,
      vocab_size=VOCAB,
      num_classes=NUM_CLASSES,
      embed_dim=EMBED_DIM,
      num_casings=NUM_CASINGS,
      case_dim=CASE_DIM,
    ),
    jax.random.key(0),
  )
  rng = _rng('params', tag, np.dtype(dtype).name)
  return {
    name: jnp.asarray(rng.normal(size=s.shape), dtype)
    for name, s in shapes.items()
  }


def _batch(cfg, tag):
  rng = _rng('batch', tag)
  K = 2 * cfg.window + 1
  words_NxK = jnp.asarray(rng.integers(VOCAB, size=(N, K)), jnp.int32)
  casing_NxK = jnp.asarray(rng.integers(NUM_CASINGS, size=(N, K)), jnp.int32)
  y_N = jnp.asarray(rng.integers(NUM_CLASSES, size=N), jnp.int32)
  return words_NxK, casing_NxK, y_N


def _pure_scores(params, words_NxK, casing_NxK, cfg, key=None):
  x_NxD = model_lib.window_vectors(
    params['L'], params['L_case'], words_NxK, casing_NxK
  )
  return model_lib.class_scores(params, x_NxD, cfg, key)


@pytest.mark.parametrize('tag', CONFIGS)
def test_scores_equal_pure_functions(tag):
  cfg = CONFIGS[tag]
  params = _params(cfg, tag)
  words_NxK, casing_NxK, _ = _batch(cfg, tag)
  clf = flax_model.WindowClassifier(params, cfg)
  f_NxC = clf(words_NxK, casing_NxK)
  assert f_NxC.shape == (N, NUM_CLASSES)
  np.testing.assert_array_equal(
    f_NxC, _pure_scores(params, words_NxK, casing_NxK, cfg)
  )
  jitted_NxC = nnx.jit(lambda m, w, c: m(w, c))(clf, words_NxK, casing_NxK)
  np.testing.assert_allclose(
    jitted_NxC,
    _pure_scores(params, words_NxK, casing_NxK, cfg),
    rtol=1e-6,
    atol=1e-6,
  )


@pytest.mark.parametrize('tag', ['softmax', 'hidden_tanh', 'hidden_relu'])
def test_grads_equal_pure_grads_float64(tag):
  cfg = CONFIGS[tag]
  with jax.enable_x64(True):
    params = _params(cfg, tag, np.float64)
    words_NxK, casing_NxK, y_N = _batch(cfg, tag)

    def module_loss(clf):
      return jnp.mean(xent(clf(words_NxK, casing_NxK), y_N))

    def pure_loss(params):
      return jnp.mean(
        xent(_pure_scores(params, words_NxK, casing_NxK, cfg), y_N)
      )

    clf = flax_model.WindowClassifier(params, cfg)
    got = nnx.to_pure_dict(nnx.jit(nnx.grad(module_loss))(clf))
    want = jax.jit(jax.grad(pure_loss))(params)
    assert set(got) == set(want) == set(params)
    for name in want:
      assert got[name].dtype == jnp.float64, name
      assert np.any(want[name] != 0), name  # a real comparison
      np.testing.assert_allclose(
        got[name], want[name], rtol=1e-12, atol=1e-15, err_msg=name
      )


@pytest.mark.parametrize('tag', ['softmax', 'hidden_tanh'])
def test_to_params_round_trips(tag):
  cfg = CONFIGS[tag]
  params = _params(cfg, tag)
  clf = flax_model.WindowClassifier.from_params(params, cfg)
  out = clf.to_params()
  assert list(out) == list(params)
  for name in params:
    np.testing.assert_array_equal(out[name], params[name])
  state = nnx.to_pure_dict(nnx.state(clf, nnx.Param))
  assert set(state) == set(params)
  for name in params:
    np.testing.assert_array_equal(state[name], params[name])
  again = flax_model.WindowClassifier(out, cfg)
  words_NxK, casing_NxK, _ = _batch(cfg, tag)
  np.testing.assert_array_equal(
    again(words_NxK, casing_NxK), clf(words_NxK, casing_NxK)
  )


def test_init_delegates_to_init_params():
  cfg = CONFIGS['hidden_tanh']
  sizes = dict(vocab_size=VOCAB, num_classes=NUM_CLASSES)
  extra = dict(embed_dim=EMBED_DIM, num_casings=NUM_CASINGS, case_dim=CASE_DIM)
  key = jax.random.key(3)
  want = model_lib.init_params(key, cfg, **sizes, **extra)
  got = flax_model.WindowClassifier.init(key, cfg, **sizes, **extra)
  from_rngs = flax_model.WindowClassifier.init(
    nnx.Rngs(params=3), cfg, **sizes, **extra
  )
  want_rngs = model_lib.init_params(
    nnx.Rngs(params=3).params(), cfg, **sizes, **extra
  )
  for name in want:
    np.testing.assert_array_equal(got.to_params()[name], want[name])
    np.testing.assert_array_equal(from_rngs.to_params()[name], want_rngs[name])
  E = _rng('embeddings').normal(size=(VOCAB, EMBED_DIM)).astype(np.float32)
  with_E = flax_model.WindowClassifier.init(key, cfg, **sizes, embeddings=E)
  np.testing.assert_array_equal(with_E.L[...], E)


def test_dropout_key_is_passed_through():
  cfg = CONFIGS['hidden_tanh']._replace(dropout=0.5)
  params = _params(cfg, 'dropout')
  words_NxK, casing_NxK, _ = _batch(cfg, 'dropout')
  clf = flax_model.WindowClassifier(params, cfg)
  key = jax.random.key(7)
  np.testing.assert_array_equal(
    clf(words_NxK, casing_NxK, rngs=key),
    _pure_scores(params, words_NxK, casing_NxK, cfg, key),
  )
  np.testing.assert_array_equal(
    clf(words_NxK, casing_NxK, rngs=nnx.Rngs(dropout=7)),
    _pure_scores(
      params, words_NxK, casing_NxK, cfg, nnx.Rngs(dropout=7).dropout()
    ),
  )
  deterministic = clf(words_NxK, casing_NxK)
  np.testing.assert_array_equal(
    deterministic,
    _pure_scores(params, words_NxK, casing_NxK, cfg._replace(dropout=0.0)),
  )
  assert not np.allclose(clf(words_NxK, casing_NxK, rngs=key), deterministic)


class _WithHead(nnx.Module):
  """A flax model that composes the classifier: a linear layer on its scores."""

  def __init__(self, classifier, rngs):
    self.classifier = classifier
    self.head = nnx.Linear(NUM_CLASSES, NUM_CLASSES, rngs=rngs)

  def __call__(self, words_NxK, casing_NxK):
    return self.head(jnp.tanh(self.classifier(words_NxK, casing_NxK)))


def test_composed_module_trains():
  cfg = CONFIGS['hidden_tanh']
  params = _params(cfg, 'compose')
  words_NxK, casing_NxK, y_N = _batch(cfg, 'compose')
  model = _WithHead(flax_model.WindowClassifier(params, cfg), nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adam(0.05), wrt=nnx.Param)

  def loss_fn(model):
    return jnp.mean(xent(model(words_NxK, casing_NxK), y_N))

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses_T = [float(step(model, optimizer)) for _ in range(15)]
  assert losses_T[-1] < 0.5 * losses_T[0], losses_T
  trained = model.classifier.to_params()
  for name in params:  # every classifier array was updated ...
    assert not np.allclose(trained[name], params[name]), name
  # ... and the exported dict still scores like the module.
  np.testing.assert_allclose(
    model.classifier(words_NxK, casing_NxK),
    _pure_scores(trained, words_NxK, casing_NxK, cfg),
    rtol=1e-6,
    atol=1e-6,
  )


def test_wrong_parameters_give_different_scores():
  """The equality tests can fail: a wrong array changes the outputs."""
  cfg = CONFIGS['hidden_tanh']  # hidden == num_classes: W is square
  params = _params(cfg, 'wrong')
  words_NxK, casing_NxK, _ = _batch(cfg, 'wrong')
  want_NxC = _pure_scores(params, words_NxK, casing_NxK, cfg)
  transposed = dict(params, W=params['W'].T)
  perturbed = dict(params, L=params['L'].at[words_NxK[0, 1], 0].add(1e-3))
  for wrong in (transposed, perturbed):
    got_NxC = flax_model.WindowClassifier(wrong, cfg)(words_NxK, casing_NxK)
    assert got_NxC.shape == want_NxC.shape
    assert not np.allclose(got_NxC, want_NxC, rtol=1e-6, atol=1e-6)


def test_bad_parameters_are_rejected():
  softmax = CONFIGS['softmax']
  params = _params(softmax, 'bad')
  with pytest.raises(ValueError, match='W has shape'):
    flax_model.WindowClassifier(dict(params, W=params['W'].T), softmax)
  with pytest.raises(ValueError, match='need keys'):
    flax_model.WindowClassifier({'L': params['L']}, softmax)
  with pytest.raises(ValueError, match='need keys'):
    flax_model.WindowClassifier(params, CONFIGS['hidden_tanh'])
  with pytest.raises(ValueError, match='supports models'):
    flax_model.WindowClassifier(params, softmax._replace(model='scorer'))
  hidden = CONFIGS['hidden_tanh']
  with pytest.raises(ValueError, match='nonlinearity'):
    flax_model.WindowClassifier(
      _params(hidden, 'bad'), hidden._replace(nonlinearity='swish')
    )
