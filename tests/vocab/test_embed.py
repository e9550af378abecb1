import pytest
import torch
import torch.nn.functional as F

from ovdet.types import Vocabulary
from ovdet.vocab.cache import TextEmbeddingCache
from ovdet.vocab.embed import TextEmbedder, expand_attributes


def test_ensemble_is_normalised_mean_of_normalised_prompts(tiny_clip):
    vocab = Vocabulary(("cat", "dog"), (("kitty",), ()))
    templates = ["a photo of a {}.", "a {} in the scene."]
    got = TextEmbedder(tiny_clip, templates).embed(vocab)
    cat = tiny_clip.encode_text(
        ["a photo of a cat.", "a cat in the scene.", "a photo of a kitty.", "a kitty in the scene."]
    )
    dog = tiny_clip.encode_text(["a photo of a dog.", "a dog in the scene."])
    want = F.normalize(torch.stack([cat.mean(0), dog.mean(0)]), dim=-1)
    torch.testing.assert_close(got, want)


def test_second_run_runs_no_text_forward(tiny_clip, tmp_path):
    vocab = Vocabulary(("cat", "traffic cone", "red umbrella"))
    first = TextEmbedder(tiny_clip, "ensemble", TextEmbeddingCache(tmp_path)).embed(vocab)
    before = tiny_clip.text_forwards
    # a fresh cache object reads from disk, as a second process would
    again = TextEmbedder(tiny_clip, "ensemble", TextEmbeddingCache(tmp_path)).embed(vocab)
    assert tiny_clip.text_forwards == before
    torch.testing.assert_close(again, first)
    # one new name costs one forward batch; the cached ones are reused
    bigger = Vocabulary(("cat", "traffic cone", "red umbrella", "dog"))
    out = TextEmbedder(tiny_clip, "ensemble", TextEmbeddingCache(tmp_path)).embed(bigger)
    assert tiny_clip.text_forwards == before + 1
    torch.testing.assert_close(out[:3], first)
    # another template set is another cache entry
    TextEmbedder(tiny_clip, "vild", TextEmbeddingCache(tmp_path)).embed(vocab)
    assert tiny_clip.text_forwards == before + 2


def test_damaged_cache_is_rebuilt(tiny_clip, tmp_path):
    vocab = Vocabulary(("cat",))
    first = TextEmbedder(tiny_clip, "single", TextEmbeddingCache(tmp_path)).embed(vocab)
    (file,) = list(tmp_path.rglob("*.safetensors"))
    file.write_bytes(b"garbage")
    before = tiny_clip.text_forwards
    out = TextEmbedder(tiny_clip, "single", TextEmbeddingCache(tmp_path)).embed(vocab)
    torch.testing.assert_close(out, first)  # recomputed, not read from the garbage
    assert tiny_clip.text_forwards == before + 1
    from safetensors.torch import load_file

    assert len(load_file(file)) == 1  # and the file is whole again
    before = tiny_clip.text_forwards
    TextEmbedder(tiny_clip, "single", TextEmbeddingCache(tmp_path)).embed(vocab)
    assert tiny_clip.text_forwards == before


def test_attribute_expansion_by_hand():
    vocab = Vocabulary(("apple", "pear"), attributes=("red", "green", "yellow"))
    p_obj = torch.tensor([[0.8, 0.2]])
    p_attr = torch.tensor([[0.5, 0.3, 0.2]])
    joint, names = expand_attributes(p_obj, p_attr, vocab)
    assert names == [
        "red apple",
        "green apple",
        "yellow apple",
        "red pear",
        "green pear",
        "yellow pear",
    ]
    torch.testing.assert_close(joint, torch.tensor([[0.4, 0.24, 0.16, 0.1, 0.06, 0.04]]))
    assert joint.sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="expected"):
        expand_attributes(p_obj, p_attr[:, :2], vocab)


def test_attribute_embeddings(tiny_clip):
    vocab = Vocabulary(("apple",), attributes=("red", "green"))
    emb = TextEmbedder(tiny_clip, "single").embed_attributes(vocab)
    torch.testing.assert_close(
        emb, tiny_clip.encode_text(["a photo of a red object.", "a photo of a green object."])
    )
    with pytest.raises(ValueError, match="no attributes"):
        TextEmbedder(tiny_clip, "single").embed_attributes(Vocabulary(("apple",)))


def test_embed_takes_an_inline_list_or_names_as_the_vocabulary_they_parse_to(tiny_clip):
    from ovdet.vocab.embed import TextEmbedder
    from ovdet.vocab.parse import parse_vocabulary

    embedder = TextEmbedder(tiny_clip, "single")
    want = embedder.embed(parse_vocabulary("cat|kitty, dog"))
    assert torch.equal(embedder.embed("cat|kitty, dog"), want)
    assert torch.equal(embedder.embed(["cat|kitty", "dog"]), want)
