"""Tests for research.evaluation.novelty: entities seen and unseen in training.

A hand-made example with its answers worked out by hand, a brute-force
check of the trie on random sentences, and the scores scoring.evaluate adds to
every evaluation (tiny corpora written to tmp_path; timings are never
asserted).
"""

import random

import numpy as np
import pytest

from research import setup as setup_lib
from research.data import conll as data_lib
from research.data import dataset as dataset_lib
from research.evaluation import metrics
from research.evaluation import novelty
from research.evaluation import scoring
from research.evaluation import tag_output
from research.formulas import model as model_lib
from research.studies import frozen_vectors
from research.training import classifier
from research.training import facade as training
from tests.conftest import write_corpus


def sentence(text, tags):
  return data_lib.Sentence(tuple(text.split()), tuple(tags.split()))


TRAIN = [
  sentence('Anna Berg visited New York .', 'B-PER I-PER O B-LOC I-LOC O'),
  sentence('Jordan won .', 'B-PER O O'),
]
# (tokens, gold tags, predicted tags) of each scored sentence, and why.
DEV = [
  # Jordan: seen (a PER in training, a LOC here), found. Kyoto: unseen,
  # predicted with the wrong type (an unseen prediction, not correct).
  ('Jordan attacked Kyoto .', 'B-LOC O B-LOC O', 'B-LOC O B-PER O'),
  # Anna Berg: seen, found. anna berg: unseen (case counts), found. New
  # York: seen, missed; York alone: an unseen prediction, wrong.
  (
    'Anna Berg met anna berg in New York',
    'B-PER I-PER O B-PER I-PER O B-LOC I-LOC',
    'B-PER I-PER O B-PER I-PER O O B-LOC',
  ),
  # Anna alone was never a training entity: unseen, found.
  ('Anna', 'B-PER', 'B-PER'),
  # A seen string predicted where gold has no entity: a seen prediction,
  # wrong.
  ('New York rose', 'O O O', 'B-ORG I-ORG O'),
]
# By hand: unseen gold {Kyoto, anna berg, Anna} = 3, predicted {Kyoto,
# anna berg, York, Anna} = 4, correct {anna berg, Anna} = 2; seen gold
# {Jordan, Anna Berg, New York} = 3, predicted {Jordan, Anna Berg, New York
# (ORG)} = 3, correct {Jordan, Anna Berg} = 2.
WANT = {
  'unseen': (3, 4, 2, 50.0, 200 / 3, 4 / 7 * 100),
  'seen': (3, 3, 2, 200 / 3, 200 / 3, 200 / 3),
}


def dev_lists():
  """(tokens, gold tags, predicted tags) of DEV, each a list of lists."""
  return [[row[i].split() for row in DEV] for i in range(3)]


def assert_scores(got, want=WANT):
  for group, (gold, pred, correct, p, r, f1) in want.items():
    s = got[group]
    assert (s['num_gold'], s['num_pred'], s['num_correct']) == (
      gold,
      pred,
      correct,
    ), group
    assert (s['precision'], s['recall'], s['f1']) == pytest.approx(
      (p, r, f1)
    ), group


def test_training_entities_are_every_chunk_of_any_type():
  entities = novelty.training_entities(TRAIN)
  assert entities.strings == {('Anna', 'Berg'), ('New', 'York'), ('Jordan',)}
  assert len(entities) == 3


def test_hand_made_unseen_and_seen_scores():
  tokens, gold, pred = dev_lists()
  got = novelty.scores(tokens, gold, pred, novelty.training_entities(TRAIN))
  assert_scores(got)
  overall = metrics.evaluate(gold, pred)['overall']
  for key in ('num_gold', 'num_pred', 'num_correct'):
    assert got['unseen'][key] + got['seen'][key] == getattr(overall, key)


def test_flat_chunks_give_the_same_scores():
  """What scoring.evaluate scores: chunks of one flat array of tag ids."""
  tokens, gold, pred = dev_lists()
  tags = ['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC', 'B-ORG', 'I-ORG']
  lengths = [len(s) for s in tokens]
  gold_N, pred_N = (
    np.array([tags.index(t) for s in column for t in s])
    for column in (gold, pred)
  )
  got = novelty.group_scores(
    metrics.flat_chunks(gold_N, lengths, tags),
    metrics.flat_chunks(pred_N, lengths, tags),
    novelty.training_entities(TRAIN).table(tokens),
  )
  assert_scores(got)


def test_table_stops_at_sentence_boundaries():
  entities = novelty.training_entities(TRAIN)
  seen_LxP = entities.table([['x', 'Anna'], ['Berg', 'Anna', 'Berg']])
  # Positions: x 0, Anna 1, (boundary 2), Berg 3, Anna 4, Berg 5, (6).
  assert seen_LxP.shape == (3, 7)
  assert np.flatnonzero(seen_LxP[2]).tolist() == [4]
  assert not seen_LxP[1].any()
  assert novelty.is_seen(seen_LxP, [1, 4, 4], [3, 6, 5]).tolist() == [
    False,
    True,
    False,
  ]


def test_no_training_entities_means_all_unseen():
  tokens, gold, pred = dev_lists()
  got = novelty.scores(tokens, gold, pred, novelty.Entities([]))
  overall = metrics.as_dict(metrics.evaluate(gold, pred))
  assert got['seen']['num_gold'] == got['seen']['num_pred'] == 0
  for key in ('num_gold', 'num_pred', 'num_correct', 'f1'):
    assert got['unseen'][key] == overall[key]


def test_trie_agrees_with_brute_force_on_random_sentences():
  """Every span's seen-ness is membership of its tokens in the strings, and
  the groups' counts add up to the overall ones."""
  rng = random.Random(0)
  words = ['a', 'b', 'c', 'A', 'd']
  tags = ['O', 'B-X', 'I-X', 'B-Y', 'I-Y']
  for _ in range(200):
    strings = {
      tuple(rng.choices(words, k=rng.randint(1, 4)))
      for _ in range(rng.randint(0, 8))
    }
    entities = novelty.Entities(strings)
    tokens = [
      rng.choices(words, k=rng.randint(0, 7)) for _ in range(rng.randint(1, 5))
    ]
    seen_LxP = entities.table(tokens)
    offset = 0
    for s in tokens:
      for a in range(len(s)):
        for b in range(a + 1, len(s) + 1):
          want = tuple(s[a:b]) in strings
          got = novelty.is_seen(seen_LxP, [offset + a], [offset + b])[0]
          assert got == want, (strings, s, a, b)
      offset += len(s) + 1
    gold, pred = (
      [[rng.choice(tags) for _ in s] for s in tokens] for _ in range(2)
    )
    got = novelty.scores(tokens, gold, pred, entities)
    overall = metrics.evaluate(gold, pred)['overall']
    for key in ('num_gold', 'num_pred', 'num_correct'):
      assert got['unseen'][key] + got['seen'][key] == getattr(overall, key)


def test_ner_evaluate_adds_the_groups_against_its_own_training_split(
  tmp_path,
):
  """scoring.evaluate's 'unseen' and 'seen' are novelty.scores of its
  predictions; a Dataset trained on a subset (sharing dev) is scored
  against the subset's entities, not a remembered table of the full one."""
  ds = dataset_lib.load_dataset(
    write_corpus(tmp_path / 'corpus'), embeddings='random', log=lambda _: None
  )
  subset = frozen_vectors.subset_dataset(ds, [0, 1])
  assert subset.splits['dev'] is ds.splits['dev']
  model_cfg = model_lib.ModelConfig(hidden=8)
  params = setup_lib.init_params(ds, model_cfg, seed=1)
  dev = ds.splits['dev']
  unseen = []
  for data in (ds, subset, ds):
    setup = setup_lib.resolve(data, model_cfg, classifier.TrainConfig())
    got = scoring.evaluate(setup, params, 'dev')
    pred_N, _ = setup_lib.predict(
      params,
      data.windows['dev'],
      [len(s.tokens) for s in dev],
      data.tags,
      data.tag_scheme,
      model_cfg,
      setup.objective,
      'argmax',
      0.0,
    )
    want = novelty.scores(
      [s.tokens for s in dev],
      [list(s.tags) for s in dev],
      dataset_lib.tags_by_sentence(pred_N, dev, data.tags),
      novelty.training_entities(data.splits['train']),
    )
    for group in novelty.GROUPS:
      assert got[group] == want[group], group
    for key in ('num_gold', 'num_pred', 'num_correct'):
      assert got['unseen'][key] + got['seen'][key] == got[key]
    unseen.append(got['unseen']['num_gold'])
  assert unseen[0] == unseen[2] < unseen[1]
  setup = setup_lib.resolve(ds, model_cfg, classifier.TrainConfig())
  assert 'unseen' not in scoring.evaluate(setup, params, 'train')


def test_the_lines_show_the_unseen_scores():
  s = {'f1': 88.2, 'accuracy': 98.06, 'unseen': {'f1': 80.14}}
  assert (
    training.dev_line([s]) == '  dev F1 88.20 (unseen 80.1)  accuracy 98.06'
  )
  tokens, gold, pred = dev_lists()
  scores = metrics.as_dict(metrics.evaluate(gold, pred))
  plain = tag_output.format_scores(scores)
  scores.update(
    novelty.scores(tokens, gold, pred, novelty.training_entities(TRAIN))
  )
  text = tag_output.format_scores(scores)
  assert text.startswith(plain + '\n')
  rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()}
  assert rows['unseen'] == ['50.00', '66.67', '57.14', '3', '4', '2']
  assert rows['seen'] == ['66.67', '66.67', '66.67', '3', '3', '2']


def test_training_entities_from_flat_chunks_equal_per_sentence(tmp_path):
  """ner's flat construction of the training entities (what every
  evaluation uses) gives novelty.training_entities' strings."""
  ds = dataset_lib.load_dataset(
    write_corpus(tmp_path / 'c'), embeddings='random', log=lambda _: None
  )
  assert len(scoring._training_entities(ds)) > 3
  assert (
    scoring._training_entities(ds).strings
    == novelty.training_entities(ds.splits['train']).strings
  )
