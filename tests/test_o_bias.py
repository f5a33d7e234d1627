"""The decoding bias against O, kept only when it beats the noise
(scoring.tune_o_bias): per-sentence counts, the paired bootstrap, and the
rule on a model made shy by construction and on one that is not."""

import numpy as np
import pytest

from research import setup as setup_lib
from research.data import dataset as dataset_lib
from research.evaluation import metrics
from research.evaluation import scoring
from research.formulas import model as model_lib
from research.training import classifier
from research.training import engine
from research.training import facade as training
from research.training import prediction

TAGS = ('O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC')


def test_sentence_counts_sum_to_conlleval_counts():
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 9, 50)
  n = int(lengths.sum())
  gold_N, pred_N = (rng.integers(0, len(TAGS), n) for _ in range(2))
  counts_Sx3 = metrics.sentence_counts(gold_N, pred_N, lengths, TAGS)
  overall = metrics.evaluate_flat(gold_N, pred_N, lengths, TAGS)['overall']
  assert counts_Sx3.shape == (50, 3)
  assert tuple(counts_Sx3.sum(axis=0)) == (
    overall.num_gold,
    overall.num_pred,
    overall.num_correct,
  )


def test_the_bootstrap_is_paired():
  """Two identical systems differ by exactly 0 on every resample; one that
  finds more of the same sentences' entities is better on every one."""
  rng = np.random.default_rng(1)
  gold = rng.integers(1, 4, 200)
  base = np.stack([gold, gold, gold // 2], axis=1)
  better = np.stack([gold, gold, gold], axis=1)
  f1_RxB = metrics.paired_bootstrap_f1(np.stack([base, base, better]), 300)
  assert f1_RxB.shape == (300, 3)
  assert np.all(f1_RxB[:, 1] == f1_RxB[:, 0])
  assert np.all(f1_RxB[:, 2] > f1_RxB[:, 0])
  assert np.ptp(f1_RxB[:, 0]) > 0  # the resamples differ


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  from tests.conftest import write_corpus  # noqa: PLC0415

  corpus = write_corpus(tmp_path_factory.mktemp('o_bias') / 'corpus')
  ds = dataset_lib.load_dataset(corpus, embeddings='random', log=lambda _: None)
  setup = setup_lib.resolve(
    ds, model_lib.ModelConfig(hidden=16), classifier.TrainConfig(batch_size=32)
  )
  params = training.train(
    setup, engine.Hyper(0.01, 0.0), epochs=8, log=lambda _: None
  ).params
  return setup, params


def _shy(setup, params, amount):
  """params whose every entity class's score is lowered by `amount`."""
  is_o = np.asarray(setup.ds.tags) == 'O'
  return dict(params, c=np.where(is_o, params['c'], params['c'] - amount))


def test_a_shy_model_gets_its_bias(trained):
  """Entity scores lowered by 10 (the synthetic corpus's margins are wide):
  the model misses entities, a bias against O of 3 recovers them, by far
  more than the noise."""
  setup, params = trained
  bias, scores, test = scoring.tune_o_bias(setup, _shy(setup, params, 10.0))
  assert bias == test['candidate'] == 3.0, test
  assert test['interval'][0] > 0 and test['gain'] > 20, test
  assert scores[bias]['recall'] > scores[0.0]['recall']
  assert bias == 0.0 or scores[bias]['f1'] > scores[0.0]['f1']


def _counts(rng, found):
  """[S, 3] counts of 400 sentences of 1-3 entities, `found` (per sentence)
  of them predicted and correct."""
  gold = rng.integers(1, 4, 400)
  hit = np.minimum(found, gold)
  return np.stack([gold, hit, hit], axis=1)


def test_a_gain_within_the_noise_keeps_no_bias():
  """One more entity found in one sentence of 400: the best F1, a gain
  whose interval reaches 0, and the bias kept is 0; the same candidate
  finding one more entity in every sentence is kept."""
  base = _counts(np.random.default_rng(2), 1)
  small = base.copy()
  small[0, 1:] += 1
  f1 = [metrics.prf(*c.sum(axis=0))['f1'] for c in (base, small)]
  bias, test = scoring.bias_rule((0.0, 1.0), f1, np.stack([base, small]))
  assert test['candidate'] == 1.0 and test['gain'] > 0, test
  assert test['interval'][0] <= 0 and bias == 0.0, test
  large = _counts(np.random.default_rng(2), 2)
  f1 = [metrics.prf(*c.sum(axis=0))['f1'] for c in (base, large)]
  bias, test = scoring.bias_rule((0.0, 1.0), f1, np.stack([base, large]))
  assert test['interval'][0] > 0 and bias == 1.0, test


def test_every_bias_is_decoded_from_one_forward_pass(trained, monkeypatch):
  """tune_o_bias scores dev once (prediction.scores) and decodes each bias
  from those scores: each bias's predictions are those of predicting with
  that bias alone."""
  setup, params = trained
  shy = _shy(setup, params, 10.0)
  biases = (0.0, 1.0, 3.0)
  alone = [setup.predict(shy, 'dev', b)[0] for b in biases]
  calls = []
  scores = prediction.scores
  monkeypatch.setattr(
    prediction, 'scores', lambda *a, **k: calls.append(1) or scores(*a, **k)
  )
  each = setup.predict_biases(shy, 'dev', biases)
  for (pred, _), want in zip(each, alone):
    np.testing.assert_array_equal(pred, want)
  assert not np.array_equal(alone[0], alone[2])  # the biases tag otherwise
  # bias 0 of this window model takes classifier.predict (with the losses)
  assert len(calls) == 1
  scoring.tune_o_bias(setup, shy)
  assert len(calls) == 2
