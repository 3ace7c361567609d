"""A corpus `xlsr synth` writes (a path with a space and non-ASCII letters, a tone language among them) is read by
the readers `xlsr pretrain` and `xlsr finetune` use, with audio of the length its lines say, and its phones labels
encode with the vocabulary fine-tuning builds from them, every symbol a token."""

import soundfile as sf

from xlsr.data.index_cache import open_manifest, open_split
from xlsr.data.label_ids import encode_labels
from xlsr.data.manifest import find_manifests, read_split
from xlsr.data.synth import synthesize_corpus
from xlsr.rates import SAMPLE_RATE
from xlsr.text.labels import build_vocabulary
from xlsr.text.vocab import tokenize


def test_a_synthesized_corpus_is_read_by_training_and_its_phones_are_the_vocabularys(tmp_path):
    out = tmp_path / "my data ü"
    synthesize_corpus(out, "es,zh", 5, seed=2, speakers_per_lang=3, words_per_utt=(1, 3), show_progress=False)
    counts = {split: len(open_split(out, split)) for split in ("train", "dev", "test")}  # pretrain's reader
    assert counts == {"train": 6, "dev": 2, "test": 2}
    for split in counts:
        for utt in read_split(out, split):
            info = sf.info(utt.audio)
            assert (info.samplerate, info.frames) == (SAMPLE_RATE, utt.num_samples)
    train = {str(path): open_manifest(path) for path in find_manifests(out, "train").values()}  # finetune's reader
    vocab = build_vocabulary(train, "phones")
    for index in train.values():
        ids = encode_labels(index, vocab, "phones")  # oov="error": a symbol outside the vocabulary raises
        for i in range(len(index)):
            phones = tokenize(index.label(i, "phones"), "phones")
            assert [vocab.tokens[j] for j in ids[i]] == phones
    assert {"˥˩", "˧˥"} & set(vocab.tokens)  # Mandarin's tones are tokens of their own
