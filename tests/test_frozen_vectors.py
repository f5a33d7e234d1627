"""Tests for experiments.freeze_vs_finetune.

Tiny CoNLL files and a tiny vectors file are written to tmp_path; nothing
from ../shared is read. Timings are never asserted.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from research.data import conll as data_lib
from research.data import dataset as dataset_lib
from research.data import vocab as vocab_lib
from research.evaluation import metrics
from research.reports import frozen_vectors as fvf_report
from research.studies import frozen_vectors as fvf

REPO = pathlib.Path(__file__).resolve().parents[1]

TRAIN = """\
-DOCSTART- O

EU B-ORG
rejects O
German B-MISC
call O
to O
boycott O
British B-MISC
lamb O
. O

Peter B-PER
Blackburn I-PER
said O
zzqx O

BRUSSELS B-LOC
1996-08-22 O

The O
European B-ORG
Commission I-ORG
said O
on O
Thursday O

Germany B-LOC
's O
representative O
to O
the O
European B-ORG
Union I-ORG
qwvx O
"""

DEV = """\
-DOCSTART- O

Paris B-LOC
Hilton B-PER
visited O
Germany B-LOC

the O
European B-ORG
Parliament I-ORG
in O
Brussels B-LOC
"""

# Vectors (d=3) for some words; 'zzqx' and 'qwvx' have none.
VECTORS = """\
eu 0.1 0.2 0.3
germany 0.2 0.1 0.0
paris 0.5 0.5 0.5
hilton 0.4 0.1 0.2
european 0.3 0.3 0.1
parliament 0.0 0.2 0.9
brussels 0.7 0.1 0.1
the 0.0 0.0 0.1
"""


@pytest.fixture(name='corpus')
def _corpus(tmp_path):
  data_dir = tmp_path / 'data'
  data_dir.mkdir()
  (data_dir / 'train.txt').write_text(TRAIN)
  (data_dir / 'valid.txt').write_text(DEV)
  vectors = tmp_path / 'vectors.txt'
  vectors.write_text(VECTORS)
  return data_dir, vectors


def _dataset(corpus):
  data_dir, vectors = corpus
  return dataset_lib.load_dataset(
    str(data_dir), embeddings=str(vectors), log=lambda _: None
  )


# Seen / unseen entity groups.


def test_chunk_group_hand_made():
  seen = fvf.training_words(
    [data_lib.Sentence(('Paris', 'is', 'NICE'), ('B-LOC', 'O', 'O'))]
  )
  assert seen == {'paris', 'is', 'nice'}
  assert fvf.chunk_group(('PARIS',), seen) == 'seen'  # case-insensitive
  assert fvf.chunk_group(('Nice', 'paris'), seen) == 'seen'
  assert fvf.chunk_group(('New', 'York'), seen) == 'unseen'
  assert fvf.chunk_group(('Paris', 'Hilton'), seen) == 'mixed'


def test_group_scores_hand_made():
  dev = [
    data_lib.Sentence(
      ('Paris', 'Hilton', 'visited', 'Germany'),
      ('B-LOC', 'B-PER', 'O', 'B-LOC'),
    ),
    data_lib.Sentence(
      ('the', 'European', 'Parliament', 'in', 'Rome'),
      ('O', 'B-ORG', 'I-ORG', 'O', 'B-LOC'),
    ),
  ]
  seen = {'paris', 'european'}
  # Gold chunks: Paris (seen), Hilton (unseen), Germany (unseen),
  # European Parliament (mixed), Rome (unseen).
  pred = [
    ['B-LOC', 'I-LOC', 'O', 'B-LOC'],  # Paris Hilton (mixed, wrong),
    # Germany (unseen, correct)
    ['O', 'B-ORG', 'I-ORG', 'O', 'B-PER'],
  ]  # EP (mixed, correct),
  # Rome as PER (unseen, wrong)
  got = fvf.group_scores(dev, pred, seen)
  counts = {
    g: (got[g]['num_gold'], got[g]['num_pred'], got[g]['num_correct'])
    for g in ('overall', *fvf.GROUPS)
  }
  assert counts == {
    'overall': (5, 4, 2),
    'seen': (1, 0, 0),
    'unseen': (3, 2, 1),
    'mixed': (1, 2, 1),
  }
  assert got['unseen']['precision'] == pytest.approx(50.0)
  assert got['unseen']['recall'] == pytest.approx(100 / 3)
  assert got['mixed']['f1'] == pytest.approx(100 * 2 * 0.5 / 1.5)
  assert got['seen']['f1'] == 0.0
  # The overall scores are conlleval's.
  ref = metrics.as_dict(metrics.evaluate([s.tags for s in dev], pred))
  for key in ('precision', 'recall', 'f1'):
    assert got['overall'][key] == pytest.approx(ref[key])
  with pytest.raises(ValueError):
    fvf.group_scores(dev, [pred[0], pred[1][:2]], seen)


# Training subsets.


def test_subset_is_deterministic_nested_and_proportional():
  n = 1000
  for f in (0.01, 0.1, 0.5, 1.0):
    a, b = fvf.subset_indices(n, f, 3), fvf.subset_indices(n, f, 3)
    np.testing.assert_array_equal(a, b)
    assert len(a) == round(f * n)
    assert len(np.unique(a)) == len(a) and np.all(np.diff(a) > 0)
    assert a.min() >= 0 and a.max() < n
  small, large = fvf.subset_indices(n, 0.1, 3), fvf.subset_indices(n, 0.5, 3)
  assert set(small) <= set(large)
  assert set(fvf.subset_indices(n, 0.1, 4)) != set(small)
  assert len(fvf.subset_indices(5, 0.01, 0)) == 1  # at least one sentence
  np.testing.assert_array_equal(fvf.subset_indices(7, 1.0, 9), np.arange(7))
  for bad in (0.0, -0.1, 1.5):
    with pytest.raises(ValueError):
      fvf.subset_indices(n, bad, 0)


def test_subset_dataset_matches_a_dataset_built_from_the_subset(corpus):
  ds = _dataset(corpus)
  ids = np.array([0, 2])  # 'EU rejects ...' and 'BRUSSELS 1996-08-22'
  sub = fvf.subset_dataset(ds, ids)
  assert [s.tokens for s in sub.splits['train']] == [
    ds.splits['train'][i].tokens for i in ids
  ]
  # Training windows equal those made from the subset with the new vocabulary.
  ref = vocab_lib.make_windows(sub.splits['train'], sub.vocab, ds.tags, k=2)
  for name in ('words', 'casing', 'labels', 'sentence_index'):
    np.testing.assert_array_equal(
      getattr(sub.windows['train'], name), getattr(ref, name)
    )
  # So do the dev windows; dev words with a vector keep it.
  ref = vocab_lib.make_windows(sub.splits['dev'], sub.vocab, ds.tags, k=2)
  np.testing.assert_array_equal(sub.windows['dev'].words, ref.words)
  for word in ('paris', 'hilton', 'parliament', 'germany', 'european'):
    np.testing.assert_array_equal(
      sub.L_init[sub.vocab.index[word]], ds.L_init[ds.vocab.index[word]]
    )
  # A training word without a vector outside the subset is <unk>; inside, not.
  assert 'qwvx' in ds.vocab.index and 'qwvx' not in sub.vocab.index
  assert sub.vocab.lookup('zzqx') == 2 and ds.vocab.lookup('zzqx') != 2
  assert 'lamb' in sub.vocab.index  # in the subset, no vector
  assert len(sub.windows['train']) == sum(
    len(s.tokens) for s in sub.splits['train']
  )


def test_judge_needs_every_seed():
  assert fvf_report.judge(np.array([-1.0, -0.5]), -1) == 'held'
  assert fvf_report.judge(np.array([1.0, 0.5]), -1) == 'was contradicted'
  assert fvf_report.judge(np.array([-3.0, 1.0]), -1) == (
    'is inconclusive (the mean goes the claimed way, 1/2 seeds agree)'
  )
  assert fvf_report.judge(np.array([0.0, 0.0]), 1).startswith('is inconclusive')


def test_budget_keeps_steps_and_caps_epochs():
  assert fvf.budget(10000, 10000, 100, 10, 200) == (10, 100)
  assert fvf.budget(1000, 10000, 100, 10, 200) == (100, 100)  # same steps
  assert fvf.budget(100, 10000, 100, 10, 200) == (200, 100)  # capped
  assert fvf.budget(30, 10000, 100, 10, 200) == (200, 30)  # small batch


# Entry points end to end.


def _start(module, *flags):
  env = dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''),
  )
  return subprocess.Popen(
    [sys.executable, '-m', module, *flags],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def _finish(proc):
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out
  return out


@pytest.mark.slow  # ./launch.sh test -m slow
def test_entry_points_run_end_to_end(corpus, tmp_path):
  data_dir, _ = corpus
  fvf_dir = tmp_path / 'fvf'
  fvf_out = _finish(
    _start(
      'experiments.freeze_vs_finetune',
      f'--data_dir={data_dir}',
      '--embeddings=random',
      '--fractions=0.5,1',
      '--seeds=0',
      '--epochs=1',
      '--hidden=8',
      f'--workdir={fvf_dir}',
    )
  )

  for name in (
    'flags.txt',
    'results.json',
    'results.csv',
    'report.md',
    fvf.PLOT_NAME,
  ):
    assert (fvf_dir / name).is_file(), name
  results = json.loads((fvf_dir / 'results.json').read_text())
  assert results['fractions'] == [0.5, 1.0]
  runs = results['runs']
  assert {(r['fraction'], r['mode']) for r in runs} == {
    (f, m) for f in (0.5, 1.0) for m in fvf.MODES
  }
  for r in runs:
    dev = r['dev']
    assert dev['overall']['num_gold'] == 5
    assert sum(dev[g]['num_gold'] for g in fvf.GROUPS) == 5
    assert r['train_sentences'] == round(r['fraction'] * 5)
  report = (fvf_dir / 'report.md').read_text()
  assert 'Verdict' in report and fvf.PLOT_NAME in report
  assert '| fraction |' in fvf_out
