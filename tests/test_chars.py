"""Tests for research.formulas.chars: the character CNN's hand-derived backprop
equals autodiff, ties included, and the character vocabulary.

Float64 (jax.enable_x64, as tests/test_manual_grads.py), every gradient
leaf compared by `autodiff.compare` at rtol 1e-10 (the cases of
research.formulas.derivations, `char_case`, under a random linear loss
sum(R * h)); each suite is traced into one program. The wrong-derivation
suite shows that the same comparison does fail.
"""

import functools
import json
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.formulas import autodiff
from research.formulas import char_problems
from research.formulas import chars as chars_lib
from research.formulas import derivations
from research.formulas import objectives

RTOL = 1e-10


def _rng(*parts):
  """A generator seeded by the name of what it is for."""
  return np.random.default_rng(zlib.crc32('/'.join(map(str, parts)).encode()))


def _empty_word_problem(rng):
  """A problem whose second word has no character (all padding)."""
  p, chars, R = char_problems.sample_chars(rng, words=4, max_len=5)
  chars[1] = 0
  return p, chars, R


def _problems():
  """{name: (params, chars, R)}: the gradcheck's char_cnn problems and a
  few more shapes."""
  out = {}
  plan = derivations.char_plan(_rng('plan'))
  for formula, _, (problem,), _, _ in plan:
    if formula.startswith('char_cnn/'):
      out[formula.split('/', 1)[1]] = problem
  out['width=1'] = char_problems.sample_chars(_rng('w1'), width=1)
  out['width=7/short'] = char_problems.sample_chars(
    _rng('w7'), words=8, max_len=6, width=7
  )
  out['one_position'] = char_problems.sample_chars(
    _rng('p1'), words=3, max_len=1
  )
  out['ties/width=5'] = char_problems.sample_chars(
    _rng('ties5'), max_len=8, width=5, ties=True
  )
  out['empty_word'] = _empty_word_problem(_rng('empty'))
  return out


@functools.cache
def _all_problems():
  with jax.enable_x64(True):
    return _problems()


def _compare(problems):
  """{name: [Diff]}: char_case on every problem, one compiled program."""

  def program(all_args):
    return [derivations.char_case(a) for a in all_args]

  outs = derivations.jit_call(program, list(problems.values()))
  return {
    name: autodiff.compare(manual, reference, RTOL)
    for name, (manual, reference) in zip(problems, outs)
  }


def _failed(diffs):
  return {d.name for d in diffs if not d.ok}


@pytest.fixture(scope='module')
def suite():
  with jax.enable_x64(True):
    return _compare(_all_problems())


@pytest.mark.parametrize(
  'name',
  [
    'width=3',
    'width=5',
    'ties',
    'windows',
    'width=1',
    'width=7/short',
    'one_position',
    'ties/width=5',
    'empty_word',
  ],
)
def test_char_grads_equal_autodiff(suite, name):
  diffs = suite[name]
  assert {d.name for d in diffs} == {'L_char', 'W_char', 'b_char', 'E_char'}
  assert not _failed(diffs), diffs


def test_problems_cover_short_long_and_tied_words():
  problems = _all_problems()
  for name in ('width=3', 'width=5', 'width=7/short'):
    _, chars, _ = problems[name]
    lengths = set(np.sum(chars != 0, axis=-1).ravel().tolist())
    width = int(name.split('=')[1].split('/')[0])
    assert {1, width - 1, chars.shape[-1]} <= lengths, (name, lengths)
  for name in ('ties', 'ties/width=5'):
    p, chars, _ = problems[name]
    responses = [char_problems.numpy_char_responses(p, w) for w in chars]
    most = max(np.max(np.sum(z == z.max(axis=0), axis=0)) for z in responses)
    assert most > 1, name  # some filter's max is attained twice


# --- The forward pass. --------------------------------------------------------


def test_features_follow_the_definition():
  """char_features equals the loops of numpy_char_features (positions
  beyond the word never win, zero vectors at its ends, 0 for an empty
  word), and row 0 of L_char does not matter."""
  problems = _all_problems()

  def program(all_args):
    out = []
    for p, chars, _ in all_args:
      h, _ = chars_lib.char_features(
        p['L_char'], p['W_char'], p['b_char'], chars
      )
      huge = p['L_char'].at[0].set(1e6)
      h_huge, _ = chars_lib.char_features(huge, p['W_char'], p['b_char'], chars)
      out.append((h, h_huge))
    return out

  with jax.enable_x64(True):
    outs = derivations.jit_call(program, list(problems.values()))
  for (name, (p, chars, _)), (h, h_huge) in zip(problems.items(), outs):
    expected = char_problems.numpy_char_features(p, chars)
    np.testing.assert_allclose(
      h, expected, rtol=1e-12, atol=1e-12, err_msg=name
    )
    np.testing.assert_array_equal(h, h_huge, err_msg=name)
  np.testing.assert_array_equal(outs[-1][0][1], 0.0)  # the empty word


def test_padding_positions_never_win():
  """Responses beyond the word's length larger than any real one do not
  reach h nor get gradient; an empty word gives 0."""
  z = jnp.array([[[1.0], [2.0], [9.0]], [[5.0], [7.0], [7.0]]])
  valid = jnp.array([[True, True, False], [False, False, False]])
  h = chars_lib.masked_max(z, valid)
  np.testing.assert_array_equal(h, [[2.0], [0.0]])
  dz = chars_lib.masked_max_backward(z, valid, h, jnp.ones((2, 1)))
  np.testing.assert_array_equal(dz[..., 0], [[0, 1, 0], [0, 0, 0]])


# --- Ties: the rule of jax.grad, measured. -----------------------------------


def test_jax_grad_of_max_splits_ties_equally():
  """What jax.grad does with ties, measured: jnp.max gives each of the k
  entries equal to the max 1/k (masked entries, -inf, nothing); the manual
  rule does the same, and so does masked_max's jax.grad."""
  x = jnp.array([1.0, 3.0, 3.0, 2.0, 3.0])
  np.testing.assert_allclose(
    jax.grad(jnp.max)(x), [0, 1 / 3, 1 / 3, 0, 1 / 3], rtol=1e-7
  )
  keep = jnp.array([True, True, False, True, True])
  masked = jax.grad(lambda x: jnp.max(jnp.where(keep, x, -jnp.inf)))(x)
  np.testing.assert_allclose(masked, [0, 1 / 2, 0, 0, 1 / 2], rtol=1e-7)
  # Two words, two filters: three-way ties, a tie with a padding position
  # (word 0, filter 0: only the real positions share it) and a padding
  # position above every real one (word 0, filter 1).
  z = jnp.array(
    [
      [[3.0, 0.0], [3.0, 1.0], [3.0, 1.0], [3.0, 5.0]],
      [[2.0, 4.0], [1.0, 4.0], [2.0, 4.0], [0.0, 0.0]],
    ]
  )
  valid = jnp.array([[True, True, True, False], [True, True, True, True]])
  dh = jnp.array([[6.0, -2.0], [3.0, 1.0]])
  manual = chars_lib.masked_max_backward(
    z, valid, chars_lib.masked_max(z, valid), dh
  )
  reference = jax.grad(lambda z: jnp.sum(dh * chars_lib.masked_max(z, valid)))(
    z
  )
  np.testing.assert_array_equal(manual, reference)
  np.testing.assert_allclose(
    manual,
    [
      [[2, 0], [2, -1], [2, -1], [0, 0]],
      [[1.5, 1 / 3], [0, 1 / 3], [1.5, 1 / 3], [0, 0]],
    ],
  )


# --- The comparison can fail: deliberately wrong derivations. ----------------


def _first_valid_position(z_MxPxF, valid_MxP, h_MxF, dh_MxF):
  """Every filter's gradient to position 0 (not the arg max)."""
  del valid_MxP, h_MxF
  first = (jnp.arange(z_MxPxF.shape[1]) == 0)[None, :, None]
  return jnp.where(first, dh_MxF[:, None, :], 0.0)


def _ties_to_one_position(z_MxPxF, valid_MxP, h_MxF, dh_MxF):
  """The arg max, but a tie given all to its first position."""
  del h_MxF
  masked = jnp.where(valid_MxP[:, :, None], z_MxPxF, -jnp.inf)
  first = jnp.argmax(masked, axis=1)  # [M, F]
  P = z_MxPxF.shape[1]
  wins = jnp.arange(P)[None, :, None] == first[:, None, :]
  return jnp.where(wins, dh_MxF[:, None, :], 0.0)


# name -> (the wrong masked_max_backward, {problem: the leaves that must
# fail}; every other leaf must pass). The bias gradient sum_m dh_m is the
# same however a word's gradient is routed, so it passes throughout.
WRONG = {
  'first_valid_position': (
    _first_valid_position,
    {
      'width=3': {'W_char', 'L_char', 'E_char'},
      'ties': {'W_char', 'L_char', 'E_char'},
    },
  ),
  'ties_to_one_position': (
    _ties_to_one_position,
    {'width=3': set(), 'ties': {'W_char', 'L_char', 'E_char'}},
  ),
}


@pytest.fixture(scope='module')
def wrong_suite():
  problems = _all_problems()
  out = {}
  for name, (wrong, expected) in WRONG.items():
    with pytest.MonkeyPatch.context() as m, jax.enable_x64(True):
      m.setattr(chars_lib, 'masked_max_backward', wrong)
      out[name] = _compare({k: problems[k] for k in expected})
  return out


@pytest.mark.parametrize('name', list(WRONG))
def test_wrong_derivation_is_reported(wrong_suite, name):
  for problem, must_fail in WRONG[name][1].items():
    diffs = wrong_suite[name][problem]
    assert _failed(diffs) == must_fail, (problem, diffs)


# --- In the window model: each slot reads its word's features. -------------


def _slots_without_shift(d_BxTxKxF, is_word_BxTxK):
  """Wrong: every slot's gradient to the window's own word (not to the word
  at t + j - k that the slot holds)."""
  return jnp.sum(d_BxTxKxF * is_word_BxTxK[..., None], axis=2)


@pytest.mark.parametrize('objective', ['crf', 'xent'])
def test_sentence_grads_with_chars_and_a_wrong_slot_route(objective):
  """manual_grads.sentence_batch_grads with the character CNN equals
  jax.grad of the sentence task's loss (every leaf, float64); with the
  slots' gradients sent to the wrong word, the character leaves fail and
  only they."""
  record = objectives.get(objective)
  with jax.enable_x64(True):
    problem = char_problems.sample_sentence_chars(
      _rng('slots', objective), record
    )
    diffs = autodiff.compare(
      *derivations.sentence_chars_case(problem, record), RTOL
    )
    assert not _failed(diffs), diffs
    assert {'W_char', 'b_char', 'E_char', 'E', 'V'} <= {d.name for d in diffs}
    with pytest.MonkeyPatch.context() as m:
      m.setattr(chars_lib, 'slot_features_backward', _slots_without_shift)
      wrong = autodiff.compare(
        *derivations.sentence_chars_case(problem, objectives.get(objective)),
        RTOL,
      )
  assert (
    {'W_char', 'E_char'} <= _failed(wrong) <= {'W_char', 'E_char', 'b_char'}
  )


# --- jit, vmap, dtypes. -------------------------------------------------------


def test_float32_vmap_and_leading_shapes():
  """Floats follow the parameters (float32 here); a [N, K, P] spelling
  gives [N, K, F], as vmap over N does, and its gradients are the [N*K, P]
  ones reshaped."""
  p = chars_lib.init_params(jax.random.key(0), 7, 4, 5, 3)
  chars = (
    jnp.asarray(_rng('f32').integers(0, 7, (2, 3, 6)), jnp.int32)
    .at[:, :, 0]
    .set(2)
  )
  args = (p['L_char'], p['W_char'], p['b_char'])

  @jax.jit
  def program(chars):
    h, cache = chars_lib.char_features(*args, chars)
    flat, flat_cache = chars_lib.char_features(*args, chars.reshape(6, 6))
    mapped = jax.vmap(lambda c: chars_lib.char_features(*args, c)[0])(chars)
    d = jnp.ones_like(h)
    g = chars_lib.char_backward(p['W_char'], chars, cache, d)
    g_flat = chars_lib.char_backward(
      p['W_char'], chars.reshape(6, 6), flat_cache, d.reshape(6, 5)
    )
    return h, flat, mapped, g, g_flat

  h, flat, mapped, g, g_flat = program(chars)
  assert h.shape == (2, 3, 5) and h.dtype == jnp.float32
  assert g.rows.shape == (2, 3, 6, 4) and g.rows.dtype == jnp.float32
  np.testing.assert_array_equal(h.reshape(6, 5), flat)
  np.testing.assert_allclose(mapped, h, rtol=1e-6)
  np.testing.assert_array_equal(g.rows.reshape(6, 6, 4), g_flat.rows)
  np.testing.assert_array_equal(g.W_char, g_flat.W_char)
  dense = chars_lib.table_grad(g, 7)
  assert dense.shape == (7, 4)
  np.testing.assert_array_equal(dense[0], 0.0)


def test_init_params_and_width():
  p = chars_lib.init_params(jax.random.key(1), 9, char_dim=4, num_filters=6)
  assert {k: v.shape for k, v in p.items()} == {
    'L_char': (9, 4),
    'W_char': (6, 3, 4),
    'b_char': (6,),
  }
  assert tuple(p) == chars_lib.PARAM_KEYS
  with pytest.raises(ValueError, match='odd'):
    chars_lib.init_params(jax.random.key(1), 9, width=4)


# --- The character vocabulary. -----------------------------------------------


def test_char_vocab_ids_and_order():
  vocab = chars_lib.CharVocab.build(['abba', 'cab', 'Ab'], min_count=1)
  # b: 4, a: 3, c and A: 1 (ties by character: 'A' < 'c').
  assert vocab.chars == ('b', 'a', 'A', 'c')
  assert len(vocab) == 6
  assert vocab.lookup('b') == 2 and vocab.lookup('z') == chars_lib.UNSEEN
  frequent = chars_lib.CharVocab.build(['abba', 'cab', 'Ab'], min_count=2)
  assert frequent.chars == ('b', 'a')


def test_char_vocab_encode_pads_truncates_and_marks_unseen():
  vocab = chars_lib.CharVocab.build(['abc'])
  ids = vocab.encode(['ab', 'abcab', 'xa', '', 'c'], 4)
  assert ids.dtype == np.int32 and ids.shape == (5, 4)
  a, b, c = (vocab.lookup(ch) for ch in 'abc')
  np.testing.assert_array_equal(
    ids,
    [
      [a, b, 0, 0],
      [a, b, c, a],  # the first max_len characters
      [1, a, 0, 0],  # unseen -> 1
      [0, 0, 0, 0],  # an empty token: all padding
      [c, 0, 0, 0],
    ],
  )
  with pytest.raises(ValueError):
    vocab.encode(['a'], 0)


def test_char_vocab_json_round_trip():
  vocab = chars_lib.CharVocab.build(['Zürich', 'U.S.', '1996-08-22'])
  again = chars_lib.CharVocab.from_json(json.loads(json.dumps(vocab.to_json())))
  assert again.chars == vocab.chars and again.index == vocab.index
  tokens = ['Zürich', 'Köln', '42']
  np.testing.assert_array_equal(
    again.encode(tokens, 5), vocab.encode(tokens, 5)
  )
