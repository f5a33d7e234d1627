"""Tests for research.data.conll, on tiny CoNLL files written to tmp_path."""

import numpy as np
import pytest

from research.data import conll as data
from research.data import dataset as dataset_lib
from research.data import vocab as vocab_lib
from research.errors import UserError

CONLL_4COL = """\
-DOCSTART- -X- -X- O

UN NNP B-NP B-ORG
praises VBZ B-VP O
Danish JJ B-NP B-MISC

Maria NNP B-NP B-PER
Lindqvist NNP I-NP I-PER

-DOCSTART- -X- -X- O

OSLO NNP B-NP B-LOC
2001-03-14 CD I-NP O
"""

# IOB1, 2 columns, first document without a -DOCSTART- header (like WikiGold).
WIKI_2COL = """\
010 I-MISC
is O
the O

Kurt I-PER
Cobain I-PER

-DOCSTART- O

The O
Bank I-ORG
of I-ORG
England I-ORG

-DOCSTART- O

"""

WNUT = """\
@paul O
loves O
the B-creative-work
Star I-creative-work
Wars I-creative-work

at O
Apple B-corporation
"""


def write(directory, name, text):
  """Writes `text` (str or bytes) to directory/name and returns the path."""
  path = directory / name
  if isinstance(text, bytes):
    path.write_bytes(text)
  else:
    path.write_text(text, encoding='utf-8')
  return path


def raises_user_error(fn, *args):
  """Checks fn(*args) raises a one-line UserError; returns its message."""
  with pytest.raises(UserError) as info:
    fn(*args)
  message = str(info.value)
  assert message and '\n' not in message
  return message


def corpus(num_documents, sentences_per_document=1):
  """Returns CoNLL text of documents whose first token is 'docI'."""
  parts = []
  for i in range(num_documents):
    parts.append('-DOCSTART- O\n\n')
    for j in range(sentences_per_document):
      parts.append(f'doc{i} B-PER\nsent{j} O\n\n')
  return ''.join(parts)


def sentence(*tokens, tags=None):
  return data.Sentence(tuple(tokens), tuple(tags or ['O'] * len(tokens)))


# read_conll


def test_read_conll_iob2_four_columns(tmp_path):
  path = write(tmp_path, 'train.txt', CONLL_4COL)
  documents = data.read_conll(path)
  assert [len(d) for d in documents] == [2, 1]
  first = documents[0][0]
  assert first.tokens == ('UN', 'praises', 'Danish')
  assert first.tags == ('B-ORG', 'O', 'B-MISC')
  assert first.path == str(path)
  assert first.lines == (3, 4, 5)
  assert documents[0][1].tags == ('B-PER', 'I-PER')
  assert documents[1][0].tokens == ('OSLO', '2001-03-14')
  assert documents[1][0].lines == (12, 13)


def test_read_conll_iob1_two_columns_first_document_without_header(tmp_path):
  path = write(tmp_path, 'wiki.txt', WIKI_2COL)
  documents = data.read_conll(path)
  # The headerless first document counts; the empty trailing one is dropped.
  assert len(documents) == 2
  assert [s.tokens for s in documents[0]] == [
    ('010', 'is', 'the'),
    ('Kurt', 'Cobain'),
  ]
  assert documents[0][0].tags == ('I-MISC', 'O', 'O')
  assert documents[1][0].tags == ('O', 'I-ORG', 'I-ORG', 'I-ORG')
  assert documents[1][0].lines == (10, 11, 12, 13)


def test_read_conll_docstart_without_blank_line_and_crlf(tmp_path):
  text = 'a O\nb B-X\n-DOCSTART- O\nc O\r\n\r\n\r\nd I-X\r\n'
  documents = data.read_conll(write(tmp_path, 'f.txt', text))
  assert [[s.tokens for s in d] for d in documents] == [
    [('a', 'b')],
    [('c',), ('d',)],
  ]


def test_read_conll_blanks_and_middle_columns(tmp_path):
  # The first token line has no tab: tabs and spaces both separate columns.
  path = write(tmp_path, 'f.txt', 'a  NN B-X\nb NN \tO\n')
  documents = data.read_conll(path)
  assert documents[0][0].tokens == ('a', 'b')
  assert documents[0][0].tags == ('B-X', 'O')
  assert documents[0][0].empty == ()


def test_read_conll_tab_separated_tokens_with_spaces(tmp_path):
  text = (
    '-DOCSTART- -X- O\n\n'
    'New York\tNNP\tB-LOC\n'
    ' is \tVBZ\tO \n\n'
    'the New  York Times\tNNP\tB-ORG\r\n'
    'reported\tVBD\tO\t\n'
  )
  documents = data.read_conll(write(tmp_path, 'f.txt', text))
  first, second = documents[0]
  assert first.tokens == ('New York', 'is')
  assert first.tags == ('B-LOC', 'O')
  assert first.lines == (3, 4)
  assert second.tokens == ('the New  York Times', 'reported')
  assert second.tags == ('B-ORG', 'O')
  assert first.empty == second.empty == ()


def test_read_conll_empty_tokens_are_counted(tmp_path):
  train = write(
    tmp_path, 'train.txt', 'Paris\tB-LOC\n\tO\n \tO\n\nParis\tB-LOC\n'
  )
  write(tmp_path, 'valid.txt', 'Paris B-LOC\n\u00a0 O\n')
  sentences = data.read_conll(train)[0]
  assert sentences[0].tokens == ('Paris', data.EMPTY_TOKEN, data.EMPTY_TOKEN)
  assert sentences[0].empty == (1, 2)
  assert sentences[1].empty == ()
  splits = data.load_splits(tmp_path)
  assert splits['dev'][0].tokens == ('Paris', data.EMPTY_TOKEN)
  assert data.count_empty_tokens(splits) == 3
  # A sentence listed twice (ner's 'train_sample') counts once.
  splits['train_sample'] = splits['train'][:1]
  assert data.count_empty_tokens(splits) == 3
  note = data.empty_tokens_note(splits)
  assert note == f'3 empty tokens read as <empty> (the first at {train}:2)'
  write(tmp_path, 'valid.txt', 'Paris B-LOC\n')
  write(tmp_path, 'train.txt', 'Paris B-LOC\n')
  assert data.empty_tokens_note(data.load_splits(tmp_path)) == ''


def test_read_conll_tab_file_with_a_space_separated_line(tmp_path):
  path = write(tmp_path, 'f.txt', 'New York\tB-LOC\n\nis O\n')
  message = raises_user_error(data.read_conll, path)
  assert f'{path}:3:' in message and 'tab-separated' in message
  assert 'line 1' in message


def test_read_conll_tab_file_with_other_column_counts(tmp_path):
  path = write(tmp_path, 'f.txt', 'a\tNN\tB-X\nb  NN \tO\n')
  message = raises_user_error(data.read_conll, path)
  assert f'{path}:2:' in message
  assert '2 tab-separated columns' in message and 'has 3' in message


def test_read_conll_tab_file_missing_tag_column(tmp_path):
  path = write(tmp_path, 'f.txt', 'New York\tB-LOC\nParis\t\n')
  message = raises_user_error(data.read_conll, path)
  assert f'{path}:2:' in message and 'no tab-separated tag column' in message


def test_read_conll_untagged(tmp_path):
  path = write(tmp_path, 'f.txt', 'EU\nrejects\n\nGerman\n')
  documents = data.read_conll(path, require_tags=False)
  assert [s.tokens for s in documents[0]] == [('EU', 'rejects'), ('German',)]
  assert documents[0][0].tags == ('O', 'O')
  message = raises_user_error(data.read_conll, path)
  assert f'{path}:1:' in message and 'one column' in message
  path = write(tmp_path, 'f.txt', 'EU\nrejects O\n')
  message = raises_user_error(
    lambda p: data.read_conll(p, require_tags=False), path
  )
  assert f'{path}:2:' in message and '2 columns' in message


def test_read_conll_wnut_tags(tmp_path):
  documents = data.read_conll(write(tmp_path, 'wnut.txt', WNUT))
  assert len(documents) == 1
  assert documents[0][0].tags == (
    'O',
    'O',
    'B-creative-work',
    'I-creative-work',
    'I-creative-work',
  )
  assert documents[0][1].tags == ('O', 'B-corporation')


def test_read_conll_iobes_tags(tmp_path):
  path = write(tmp_path, 'f.txt', 'a S-PER\nb B-ORG\nc E-ORG\n')
  documents = data.read_conll(path)
  assert documents[0][0].tags == ('S-PER', 'B-ORG', 'E-ORG')


def test_read_conll_missing_file(tmp_path):
  path = tmp_path / 'nope.txt'
  message = raises_user_error(data.read_conll, path)
  assert str(path) in message and 'not found' in message


def test_read_conll_no_tag_column(tmp_path):
  path = write(tmp_path, 'f.txt', 'a O\n\nb\n')
  message = raises_user_error(data.read_conll, path)
  assert f'{path}:3:' in message and 'one column' in message


def test_read_conll_mixed_column_counts(tmp_path):
  path = write(tmp_path, 'f.txt', '-DOCSTART- -X- -X- O\n\na NN B-NP O\nb O\n')
  message = raises_user_error(data.read_conll, path)
  assert f'{path}:4:' in message
  assert '2 columns' in message and 'has 4' in message and 'line 3' in message


def test_read_conll_undecodable_bytes(tmp_path):
  path = write(tmp_path, 'f.txt', b'a O\nb O\n\nc\xff\xfe O\n')
  message = raises_user_error(data.read_conll, path)
  assert f'{path}:4:' in message and 'UTF-8' in message


def test_read_conll_bad_tag(tmp_path):
  for tag in ('PER', 'B_PER', 'X-PER', 'B-', 'o'):
    path = write(tmp_path, 'f.txt', f'a O\nb {tag}\n')
    message = raises_user_error(data.read_conll, path)
    assert f'{path}:2:' in message and repr(tag) in message


def test_read_conll_empty_file(tmp_path):
  for text in ('', '\n\n', '-DOCSTART- -X- -X- O\n\n'):
    path = write(tmp_path, 'f.txt', text)
    message = raises_user_error(data.read_conll, path)
    assert str(path) in message and 'empty split' in message


# find_split_files, split_documents, load_splits


@pytest.mark.parametrize(
  'train,dev,test',
  [
    ('train.txt', 'valid.txt', 'test.txt'),
    ('train.txt', 'dev.txt', None),
    ('eng.train', 'eng.testa', 'eng.testb'),
    ('train.conll', 'dev.conll', 'test.conll'),
    ('train.conll', 'valid.conll', None),
  ],
)
def test_find_split_files_naming_schemes(tmp_path, train, dev, test):
  expected = {
    'train': write(tmp_path, train, WNUT),
    'dev': write(tmp_path, dev, WNUT),
  }
  if test:
    expected['test'] = write(tmp_path, test, WNUT)
  write(tmp_path, 'README.txt', 'ignored')
  assert data.find_split_files(tmp_path) == expected
  splits = data.load_splits(tmp_path)
  assert sorted(splits) == sorted(expected)
  assert all(len(sentences) == 2 for sentences in splits.values())


def test_find_split_files_single_file(tmp_path):
  path = write(tmp_path, 'corpus.conll.txt', WIKI_2COL)
  write(tmp_path, 'LICENSE', 'x')
  write(tmp_path, 'README.rst', 'x')
  assert data.find_split_files(tmp_path) == {'single': path}
  # The file itself, as the message of a missing directory invites.
  assert data.find_split_files(path) == {'single': path}


def test_find_split_files_nothing_recognized(tmp_path):
  assert data.find_split_files(tmp_path) == {}
  write(tmp_path, 'a.txt', WNUT)
  write(tmp_path, 'b.conll', WNUT)
  assert data.find_split_files(tmp_path) == {}


def test_find_split_files_split_given_twice(tmp_path):
  write(tmp_path, 'train.txt', WNUT)
  write(tmp_path, 'valid.txt', WNUT)
  write(tmp_path, 'dev.txt', WNUT)
  message = raises_user_error(data.find_split_files, tmp_path)
  assert str(tmp_path / 'dev.txt') in message


def test_split_documents_deterministic_and_proportions():
  documents = [[sentence(f'doc{i}')] for i in range(100)]
  splits = data.split_documents(documents)
  assert splits == data.split_documents(documents)
  assert {k: len(v) for k, v in splits.items()} == {
    'train': 80,
    'dev': 10,
    'test': 10,
  }
  first = lambda docs: [d[0].tokens[0] for d in docs[:3]]
  assert first(splits['dev']) == ['doc8', 'doc18', 'doc28']
  assert first(splits['test']) == ['doc9', 'doc19', 'doc29']
  assert first(splits['train']) == ['doc0', 'doc1', 'doc2']
  few = data.split_documents(documents[:9])
  assert [len(few[k]) for k in ('train', 'dev', 'test')] == [8, 1, 0]


def test_load_splits_single_file(tmp_path):
  write(tmp_path, 'corpus.txt', corpus(20, sentences_per_document=2))
  splits = data.load_splits(tmp_path)
  assert {k: len(v) for k, v in splits.items()} == {
    'train': 32,
    'dev': 4,
    'test': 4,
  }
  assert [s.tokens[0] for s in splits['dev']] == [
    'doc8',
    'doc8',
    'doc18',
    'doc18',
  ]
  assert [s.tokens[0] for s in splits['test']] == [
    'doc9',
    'doc9',
    'doc19',
    'doc19',
  ]


def test_load_splits_missing_dir(tmp_path):
  path = tmp_path / 'nope'
  message = raises_user_error(data.load_splits, path)
  assert str(path) in message and 'not found' in message


def test_load_splits_no_recognizable_files(tmp_path):
  write(tmp_path, 'notes.md', 'x')
  message = raises_user_error(data.load_splits, tmp_path)
  assert str(tmp_path) in message
  for name in ('train.txt', 'valid.txt', 'eng.testb', 'test.conll'):
    assert name in message


def test_load_splits_train_without_dev(tmp_path):
  path = write(tmp_path, 'train.txt', WNUT)
  write(tmp_path, 'test.txt', WNUT)
  message = raises_user_error(data.load_splits, tmp_path)
  assert str(path) in message and 'no dev file' in message
  assert 'valid.txt' in message


def test_load_splits_empty_split_file(tmp_path):
  write(tmp_path, 'train.txt', WNUT)
  path = write(tmp_path, 'valid.txt', '\n')
  message = raises_user_error(data.load_splits, tmp_path)
  assert str(path) in message and 'empty split' in message


def test_load_splits_single_file_too_few_documents(tmp_path):
  path = write(tmp_path, 'corpus.txt', corpus(9))
  message = raises_user_error(data.load_splits, tmp_path)
  assert str(path) in message and "empty split 'test'" in message


# check_tags


def test_check_tags_order(tmp_path):
  write(tmp_path, 'train.txt', CONLL_4COL)
  write(tmp_path, 'valid.txt', 'x NN B-NP B-PER\ny NN B-NP O\n')
  splits = data.load_splits(tmp_path)
  assert data.check_tags(splits) == [
    'O',
    'B-LOC',
    'B-MISC',
    'B-ORG',
    'B-PER',
    'I-PER',
  ]


def test_check_tags_unseen_tag(tmp_path):
  write(tmp_path, 'train.txt', CONLL_4COL)
  write(tmp_path, 'valid.txt', 'x NN B-NP O\n')
  path = write(
    tmp_path, 'test.txt', 'x NN B-NP O\n\ny NN B-NP I-LOC\nz NN B-NP I-LOC\n'
  )
  message = raises_user_error(data.check_tags, data.load_splits(tmp_path))
  assert f'{path}:3:' in message and "'I-LOC'" in message


# Casing and normalization


@pytest.mark.parametrize(
  'token,casing',
  [
    ('the', 'lower'),
    ("don't", 'lower'),
    ('e.g.', 'lower'),
    ('well-known', 'lower'),
    ('é', 'lower'),
    ('EU', 'upper'),
    ('U.S.', 'upper'),
    ('AT&T', 'upper'),
    ('German', 'title'),
    ('I', 'title'),
    ('A.', 'title'),
    ('Élan', 'title'),
    ('iPhone', 'mixed'),
    ('McDonald', 'mixed'),
    ('eBay', 'mixed'),
    ('1996', 'numeric'),
    ('1,000.5', 'numeric'),
    ('1996-08-22', 'numeric'),
    ('3/4', 'numeric'),
    ('2nd', 'has_digit'),
    ('A4', 'has_digit'),
    ('12:30', 'has_digit'),
    ('5%', 'has_digit'),
    ('.', 'other'),
    ('--', 'other'),
    ('(', 'other'),
    ('$', 'other'),
    ('-', 'other'),
    ('北京', 'other'),
  ],
)
def test_casing_id(token, casing):
  assert vocab_lib.CASINGS[vocab_lib.casing_id(token)] == casing


def test_casings_table():
  assert vocab_lib.CASINGS[0] == '<pad>' and len(vocab_lib.CASINGS) == 8


def test_fold_digits():
  assert vocab_lib.fold_digits('1996-08-22') == '0000-00-00'
  assert vocab_lib.fold_digits('A4 b') == 'A0 b'
  assert vocab_lib.fold_digits('none') == 'none'


def test_normalize():
  assert vocab_lib.normalize('EU') == 'eu'
  assert vocab_lib.normalize('1996-08-22') == '0000-00-00'
  assert (
    vocab_lib.normalize('1996-08-22', frozenset({'1996-08-22'})) == '1996-08-22'
  )
  assert vocab_lib.normalize('1996', frozenset({'1996'})) == '1996'
  assert vocab_lib.normalize('2nd', frozenset({'1996'})) == '0nd'
  assert vocab_lib.normalize('Paris', frozenset({'paris'})) == 'paris'


# Vocab


def test_vocab_build_order_and_min_count():
  train = [
    sentence('b', 'a', 'The', 'the'),
    sentence('c', 'a', 'the', '7'),
    sentence('9'),
  ]
  vocab = vocab_lib.Vocab.build(train)
  assert vocab.words == ['<s>', '</s>', '<unk>', 'the', '0', 'a', 'b', 'c']
  assert vocab.index == {w: i for i, w in enumerate(vocab.words)}
  assert len(vocab) == 8
  vocab = vocab_lib.Vocab.build(train, min_count=2)
  assert vocab.words == ['<s>', '</s>', '<unk>', 'the', '0', 'a']
  assert vocab.lookup('b') == 2


def test_vocab_build_pretrained_and_other_sentences():
  train = [sentence('a', 'a', 'rare', 'rarer')]
  dev = [sentence('Dev', 'unseen', 'a')]
  pretrained = frozenset({'dev', 'rare', 'zzz', 'aaa'})
  vocab = vocab_lib.Vocab.build(train, dev)
  assert 'dev' not in vocab.index  # Not pretrained: dev words stay out.
  vocab = vocab_lib.Vocab.build(train, dev, pretrained, min_count=2)
  # 'rare' is kept despite min_count (it has a vector); 'rarer' is not.
  assert vocab.words == ['<s>', '</s>', '<unk>', 'a', 'dev', 'rare']
  assert vocab.known == pretrained
  assert vocab.lookup('unseen') == 2 and vocab.lookup('rarer') == 2
  assert vocab.lookup('DEV') == vocab.index['dev']
  vocab = vocab_lib.Vocab.build(train, dev, pretrained, all_pretrained=True)
  assert vocab.words == [
    '<s>',
    '</s>',
    '<unk>',
    'a',
    'rare',
    'rarer',
    'aaa',
    'dev',
    'zzz',
  ]


def test_vocab_lookup_normalizes():
  vocab = vocab_lib.Vocab(
    ['<s>', '</s>', '<unk>', 'eu', '0000', '1996'], known=frozenset({'1996'})
  )
  assert vocab.lookup('EU') == 3
  assert vocab.lookup('1996') == 5
  assert vocab.lookup('2001') == 4
  specials = [vocab_lib.PAD_LEFT, vocab_lib.PAD_RIGHT, vocab_lib.UNK]
  assert vocab.lookup('never') == vocab_lib.Vocab(specials).lookup('x') == 2


def test_vocab_requires_specials():
  with pytest.raises(ValueError):
    vocab_lib.Vocab(['a', 'b', 'c'])


# make_windows

VOCAB = vocab_lib.Vocab(['<s>', '</s>', '<unk>', 'eu', 'rejects', 'german'])
TAGS = ['O', 'B-MISC', 'B-ORG']


def test_make_windows_three_tokens_k2():
  s = sentence('EU', 'rejects', 'German', tags=['B-ORG', 'O', 'B-MISC'])
  windows = vocab_lib.make_windows([s], VOCAB, TAGS, k=2)
  np.testing.assert_array_equal(
    windows.words, [[0, 0, 3, 4, 5], [0, 3, 4, 5, 1], [3, 4, 5, 1, 1]]
  )
  # EU upper (2), rejects lower (1), German title (3); padding 0.
  np.testing.assert_array_equal(
    windows.casing, [[0, 0, 2, 1, 3], [0, 2, 1, 3, 0], [2, 1, 3, 0, 0]]
  )
  np.testing.assert_array_equal(windows.labels, [2, 0, 1])
  np.testing.assert_array_equal(windows.sentence_index, [0, 0, 0])
  assert len(windows) == 3
  for array in (
    windows.words,
    windows.casing,
    windows.labels,
    windows.sentence_index,
  ):
    assert array.dtype == np.int32


def test_make_windows_k0_and_unknown_word():
  s = sentence('EU', 'Brussels', 'German', tags=['B-ORG', 'O', 'B-MISC'])
  windows = vocab_lib.make_windows([s, s], VOCAB, TAGS, k=0)
  np.testing.assert_array_equal(windows.words, [[3], [2], [5]] * 2)
  np.testing.assert_array_equal(windows.casing, [[2], [3], [3]] * 2)
  np.testing.assert_array_equal(windows.sentence_index, [0, 0, 0, 1, 1, 1])


def test_make_windows_never_cross_sentence_boundaries():
  lengths = [1, 4, 2, 7, 3]
  words = [f'w{i}' for i in range(sum(lengths))]
  vocab = vocab_lib.Vocab(
    [vocab_lib.PAD_LEFT, vocab_lib.PAD_RIGHT, vocab_lib.UNK] + words
  )
  sentences, start = [], 0
  for n in lengths:
    sentences.append(sentence(*words[start : start + n]))
    start += n
  for k in (0, 1, 3, 8):
    windows = vocab_lib.make_windows(sentences, vocab, ['O'], k=k)
    assert windows.words.shape == (sum(lengths), 2 * k + 1)
    row = 0
    for index, s in enumerate(sentences):
      for i in range(len(s.tokens)):
        expected = []
        for j in range(i - k, i + k + 1):
          expected.append(
            0
            if j < 0
            else 1
            if j >= len(s.tokens)
            else vocab.lookup(s.tokens[j])
          )
        assert windows.words[row].tolist() == expected
        assert windows.sentence_index[row] == index
        row += 1


def test_make_windows_empty():
  windows = vocab_lib.make_windows([], VOCAB, TAGS, k=2)
  assert windows.words.shape == (0, 5) and len(windows) == 0


def test_make_windows_unknown_tag(tmp_path):
  path = write(tmp_path, 'f.txt', 'EU B-ORG\nrejects B-PER\n')
  sentences = data.read_conll(path)[0]
  message = raises_user_error(vocab_lib.make_windows, sentences, VOCAB, TAGS)
  assert f'{path}:2:' in message and "'B-PER'" in message


def test_case_copies_add_lowercased_and_uppercased_documents():
  """dataset_lib.case_copies: every n-th document again, lowercased then
  uppercased, each copy a document of its own with the same tags."""
  sentences = [
    data.Sentence(
      ('Anna', 'visited', 'Kyoto'), ('B-PER', 'O', 'B-LOC'), 'f', document=d
    )
    for d in range(4)
  ] + [data.Sentence(('Mr', 'Holm'), ('O', 'B-PER'), 'f', document=0)]
  copies = dataset_lib.case_copies(sentences, 0.5)  # documents 0 and 2
  assert [c.tokens for c in copies] == [
    ('anna', 'visited', 'kyoto'),
    ('mr', 'holm'),
    ('ANNA', 'VISITED', 'KYOTO'),
  ]
  assert [c.tags for c in copies] == [
    s.tags for s in (sentences[0], sentences[4], sentences[2])
  ]
  assert [c.document for c in copies] == [1_000_000, 1_000_000, 1_000_001]
  assert len(dataset_lib.case_copies(sentences, 1.0)) == len(sentences)
  with pytest.raises(ValueError, match='case_augment'):
    dataset_lib.case_copies(sentences, 1.5)
