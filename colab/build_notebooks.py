"""Write the Colab notebooks of this folder from the cell lists below.

    python colab/build_notebooks.py

The notebooks are committed without outputs; CI executes them (tests/test_notebooks.py).
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

INSTALL = new_markdown_cell(
    "**In Colab**, first install the package from a clone of this repository:\n\n"
    "```\n!git clone <this repository> tf_pathattr && pip install -q -e './tf_pathattr[dev]'\n```\n"
    '(Locally: `pip install -e ".[dev]"` in the repository.)'
)

QUICKSTART = [
    new_markdown_cell(
        "# tf_pathattr quick start\n\nTrain a small CNN on scikit-learn's bundled digits, "
        "explain it with every method, and check the attributions against their completeness targets."
    ),
    INSTALL,
    new_code_cell("""import numpy as np, keras, tensorflow as tf
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import tf_pathattr as tpa
from sklearn.datasets import load_digits

digits = load_digits()
x = (digits.images / 16.0).astype("float32")[..., None]   # [N, 8, 8, 1] in [0, 1]
y = digits.target
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((8, 8, 1)),
    keras.layers.Conv2D(16, 3, padding="same", activation="tanh"),
    keras.layers.Flatten(),
    keras.layers.Dense(32, activation="tanh"),
    keras.layers.Dense(10),                                   # logits: we explain raw outputs
])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(x[:1500], y[:1500], epochs=15, batch_size=32, verbose=0)
print("test accuracy", model.evaluate(x[1500:], y[1500:], verbose=0)[1])"""),
    new_markdown_cell(
        "## Integrated Gradients and its completeness delta\n\n"
        "`delta = sum(attr) - (F(x) - F(baseline))` per example; Gauss-Legendre makes it tiny."
    ),
    new_code_cell("""probe = x[1500:1506]
attr, delta = tpa.integrated_gradients(model, probe, target=None, n_steps=64, return_convergence_delta=True)
print("max |delta|:", float(tf.reduce_max(tf.abs(delta))))
for rule in ["riemann_left", "riemann_trapezoid", "gausslegendre"]:
    _, d = tpa.integrated_gradients(model, probe, None, n_steps=16, rule=rule, return_convergence_delta=True)
    print(f"{rule:18s} max |delta| at 16 steps: {float(tf.reduce_max(tf.abs(d))):.2e}")"""),
    new_markdown_cell("## Every method side by side"),
    new_code_cell("""options = {
    "integrated_gradients": dict(n_steps=64),
    "guided_integrated_gradients": dict(n_steps=64),
    "blur_integrated_gradients": dict(n_steps=64, max_sigma=4.0),
    "integrated_decision_gradients": dict(n_steps=32),
    "smooth_taylor": dict(n_roots=64, noise_scale=0.3, seed=0),
    "noise_tunnel": dict(base_method="integrated_gradients", nt_samples=8, n_steps=32, seed=0),
    "expected_gradients": dict(background=x[:200], n_samples=64, seed=0),
}
maps = {name: tpa.attribute(model, probe, None, method=name, **opts).numpy()
        for name, opts in options.items() if name in tpa.METHODS}
fig = tpa.viz.plot_attributions(probe, maps)
print(sorted(maps))"""),
    new_markdown_cell("## SmoothGrad / VarGrad over any method, XRAI regions over any map"),
    new_code_cell("""vg = tpa.noise_tunnel("gradients", model, probe, None, nt_type="vargrad", nt_samples=16, seed=1)
print("VarGrad is non-negative:", float(tf.reduce_min(vg)) >= 0)
left, right = tpa.split_integrated_gradients(model, probe, None, ratio=0.9)
print("left + right == IG:", np.allclose(left + right, tpa.integrated_gradients(model, probe, None), atol=1e-5))"""),
]

TEXT = [
    new_markdown_cell(
        "# Text models: attribution to the embedding layer\n\n"
        "Token ids are integers and have no gradient, so we attribute to the output of the "
        "`Embedding` layer with `layer=`. The label of this synthetic set is set by trigger "
        "tokens, so we know which positions should light up."
    ),
    INSTALL,
    new_code_cell("""import numpy as np, keras, tensorflow as tf
import tf_pathattr as tpa

ids, labels, trigger_mask = tpa.data.trigger_tokens(2000, length=16, vocab=50, seed=0)
keras.utils.set_random_seed(0)
inp = keras.Input((16,), dtype="int32")
h = keras.layers.Embedding(50, 16, name="embedding")(inp)
h = keras.layers.Conv1D(16, 3, padding="same", activation="relu")(h)
out = keras.layers.Dense(2)(keras.layers.GlobalMaxPooling1D()(h))
model = keras.Model(inp, out)
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(ids[:1600], labels[:1600], epochs=8, batch_size=64, verbose=0)
print("test accuracy", model.evaluate(ids[1600:], labels[1600:], verbose=0)[1])"""),
    new_code_cell("""pos = np.where(labels[1600:] == 1)[0][:50] + 1600
pad = tpa.layer_activations(model, "embedding", np.zeros_like(ids[pos]))   # padding-token baseline
attr, delta = tpa.integrated_gradients(model, ids[pos], 1, layer="embedding", baseline=pad,
                                       return_convergence_delta=True)
token_scores = attr.numpy().sum(-1)                                          # one score per token
top = token_scores.argmax(1)
print("max |delta|:", float(tf.reduce_max(tf.abs(delta))))
print("top-scored token is a trigger in", trigger_mask[pos, top].mean() * 100, "% of positive sequences")"""),
]

WORKFLOWS = [
    new_markdown_cell(
        "# SavedModels and training-time logging\n\n"
        "Export a SavedModel that carries `explain_<method>` endpoints usable without tf_pathattr, "
        "explain a reloaded SavedModel, and log attributions during `fit` with the Keras callback."
    ),
    INSTALL,
    new_code_cell("""import tempfile, os, numpy as np, keras, tensorflow as tf
import tf_pathattr as tpa

keras.utils.set_random_seed(0)
x = np.random.default_rng(0).random((64, 8, 8, 3)).astype("float32")
y = (x[:, :4].mean((1, 2, 3)) > x[:, 4:].mean((1, 2, 3))).astype("int32")
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3, activation="tanh"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
workdir = tempfile.mkdtemp()
logger = tpa.callbacks.AttributionLogger(x[:4], method="integrated_gradients",
                                         method_options={"n_steps": 16}, log_dir=os.path.join(workdir, "logs"))
model.fit(x, y, epochs=2, verbose=0, callbacks=[logger])
print(sorted(os.listdir(os.path.join(workdir, "logs"))))"""),
    new_code_cell("""path = os.path.join(workdir, "explainable")
tpa.saved_model.export(model, path, methods=("integrated_gradients",), options={"integrated_gradients": {"n_steps": 16}})
loaded = tf.saved_model.load(path)                 # plain TensorFlow: no tf_pathattr needed from here on
exported = loaded.explain_integrated_gradients(tf.constant(x[:3]), tf.constant([-1, -1, -1]))  # -1 = predicted class
in_process = tpa.integrated_gradients(model, x[:3], None, n_steps=16)
print("exported == in-process:", np.allclose(exported, in_process, atol=1e-5))
print("explain a reloaded SavedModel:", tpa.integrated_gradients(loaded.serve, x[:3], None, n_steps=16).shape)"""),
]

KERAS_HUB = [
    new_markdown_cell(
        "# keras-hub text models: token attributions, next tokens, continuations\n\n"
        "A keras-hub BERT classifier and a GPT-2 causal LM, built from small configs here so the "
        "notebook runs offline; with downloads, the same code works on presets (last cell). "
        "`tpa.text` attributes to the token-embedding lookup only: GPT-2's tied embedding also "
        "computes the logits (`token_embedding(h, reverse=True)`), and that projection keeps using "
        "the real weights."
    ),
    new_markdown_cell(
        "**In Colab**: `pip install -q -e './tf_pathattr[dev]'` (with the full `tensorflow` wheel, "
        "`pip install keras-hub` works as is). Next to `tensorflow-cpu`, install keras-hub without letting it "
        "pull a second TensorFlow:\n\n"
        "```\npip install --no-deps keras-hub\npip install absl-py packaging regex rich sentencepiece tokenizers "
        "'kagglehub!=1.0.1' kagglesdk==0.1.28\n```\n"
        "(keras-hub's tokenizers run eagerly without tensorflow-text.)"
    ),
    new_code_cell("""import numpy as np, keras, keras_hub, tensorflow as tf
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from IPython.display import HTML, display
import tf_pathattr as tpa

words = ["the", "movie", "was", "great", "awful", "plot", "acting", "and", "not", "really", "fun", "boring"]
tokenizer = keras_hub.models.BertTokenizer(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words)
preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=10)
keras.utils.set_random_seed(0)
classifier = keras_hub.models.BertTextClassifier(
    backbone=keras_hub.models.BertBackbone(vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_heads=2,
                                           hidden_dim=16, intermediate_dim=32, max_sequence_length=10),
    num_classes=2, preprocessor=None)   # with a preset: keras_hub.models.BertTextClassifier.from_preset(...)

# a toy sentiment set: "great"/"fun" positive, "awful"/"boring" negative (tokenized eagerly, trained on ids)
rng = np.random.default_rng(0)
filler = ["the", "movie", "was", "plot", "acting", "and", "really"]
sents, labels = [], []
for _ in range(400):
    label = int(rng.integers(2))
    key = rng.choice(["great", "fun"] if label else ["awful", "boring"])
    s = list(rng.choice(filler, size=4))
    s.insert(int(rng.integers(5)), key)
    sents.append(" ".join(s))
    labels.append(label)
x_train = {k: np.asarray(v) for k, v in preprocessor(sents).items()}
classifier.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"],
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
classifier.fit(x_train, np.array(labels), epochs=10, batch_size=32, verbose=0)
print("train accuracy", classifier.evaluate(x_train, np.array(labels), verbose=0)[1])"""),
    new_markdown_cell(
        "## Token attributions for the classifier\n\n"
        "Strings go through the preprocessor eagerly. The baseline is `[MASK]` at every word "
        "(the tokenizer has a mask token), `[CLS]`, `[SEP]` and padding keep their embedding and "
        "score exactly 0. `delta` is the completeness gap."
    ),
    new_code_cell("""texts = ["the movie was great", "the plot was really boring"]
for n in (64, 256, 1024):   # always read the delta: this toy model switches sharply along the path
    res = tpa.text.token_attributions(classifier, texts, target=1, preprocessor=preprocessor, n_steps=n,
                                      return_convergence_delta=True)
    print(f"n_steps={n:5d}  max |delta| = {np.abs(res.delta).max():.2e}")
for i, t in enumerate(texts):
    print(tpa.viz.text_terminal(res.tokens[i], res.scores[i], res.mask[i], colour=False))
display(HTML(tpa.viz.text_html(res.tokens[0], res.scores[0], res.mask[0], title=texts[0])))
display(HTML(tpa.viz.text_html(res.tokens[1], res.scores[1], res.mask[1], title=texts[1])))
sig = tpa.text.token_attributions(classifier, texts, 1, method="sig", preprocessor=preprocessor, n_steps=16)
dig = tpa.text.token_attributions(classifier, texts, 1, method="dig", preprocessor=preprocessor, n_neighbors=10)
print("SIG:", sig.pairs(1))
print("DIG:", dig.pairs(1))"""),
    new_markdown_cell("## A causal LM: the next token, a continuation, and the per-token matrix"),
    new_code_cell("""vocab, merges = {"<|endoftext|>": 0}, []          # a tiny byte-pair vocabulary built offline
def add(t):
    vocab.setdefault(t, len(vocab))
for ch in sorted(set("".join(words))) + ["\\u0120"]:
    add(ch)
for w in words:
    for piece in (w, "\\u0120" + w):
        cur = piece[0]
        for ch in piece[1:]:
            if f"{cur} {ch}" not in merges:
                merges.append(f"{cur} {ch}")
            cur += ch
            add(cur)
gpt_tok = keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges)
gpt_pre = keras_hub.models.GPT2CausalLMPreprocessor(gpt_tok, sequence_length=12, add_end_token=False)
keras.utils.set_random_seed(1)
lm = keras_hub.models.GPT2CausalLM(backbone=keras_hub.models.GPT2Backbone(
    vocabulary_size=len(vocab), num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
    max_sequence_length=16), preprocessor=None)    # with a preset: keras_hub.models.GPT2CausalLM.from_preset(...)
lm.compile(sampler="greedy")
prompt = gpt_pre.generate_preprocess(["the movie was"])
prompt_len = int(np.asarray(prompt["padding_mask"]).sum())
generated = lm.generate({k: tf.convert_to_tensor(v) for k, v in prompt.items()}, stop_token_ids=None)
generated = {k: np.asarray(v) for k, v in generated.items()}
print([gpt_tok.id_to_token(int(i)) for i in generated["token_ids"][0]])"""),
    new_code_cell("""# the model's own greedy next token after the prompt (log-probability, padding baseline)
nxt = tpa.text.token_attributions(lm, prompt, tokenizer=gpt_tok, n_steps=64, return_convergence_delta=True)
print("next token:", gpt_tok.id_to_token(int(nxt.target_tokens[0])), " delta:", nxt.delta)
print(tpa.viz.text_terminal(nxt.tokens[0], nxt.scores[0], nxt.mask[0], colour=False))
# the whole continuation: sum of teacher-forced log-probabilities of the generated tokens
cont = tpa.text.token_attributions(lm, generated, tpa.text.continuation(prompt_len), tokenizer=gpt_tok, n_steps=64,
                                   return_convergence_delta=True)
print("continuation delta:", cont.delta)
display(HTML(tpa.viz.text_html(cont.tokens[0], cont.scores[0], cont.mask[0], title="prompt -> whole continuation")))"""),
    new_code_cell("""# every generated token attributed to every prompt token, in one batched call: [B, T_out, T_in]
matrix, info = tpa.text.generation_attributions(lm, generated, prompt_len, n_steps=32)
toks = [gpt_tok.id_to_token(int(i)) for i in generated["token_ids"][0]]
m = matrix[0][:, :prompt_len]
lim = np.abs(m).max()
fig, ax = plt.subplots(figsize=(4, 4))
ax.imshow(m, cmap="bwr", vmin=-lim, vmax=lim)
ax.set_xticks(range(prompt_len), toks[:prompt_len], rotation=90)
ax.set_yticks(range(m.shape[0]), toks[prompt_len:])
ax.set_xlabel("prompt token")
ax.set_ylabel("generated token")
fig.tight_layout()
fig.savefig("generation_matrix.png")
print(matrix.shape)"""),
    new_markdown_cell(
        "## With downloads\n\n"
        '```python\nlm = keras_hub.models.GPT2CausalLM.from_preset("gpt2_base_en")\n'
        'res = tpa.text.token_attributions(lm, ["The capital of France is"], '
        "preprocessor=lm.preprocessor)\n"
        "```\n"
        "For Gemma/Llama-style decoders keep the default padding baseline: a zero embedding is a "
        "singular point of their first RMSNorm."
    ),
]

REPORT = [
    new_markdown_cell(
        "# Which method should I trust on my model? `tpa.report`\n\n"
        "One call writes a self-contained HTML page (no network, opens anywhere): every method's maps on "
        "your examples, completeness gap, deletion / insertion / SIC AUC, time per example, the "
        "model-randomization sanity check (Adebayo et al., NeurIPS 2018), and a verdict that ranks the "
        "methods on *this* model and data."
    ),
    INSTALL,
    new_code_cell("""import html
import numpy as np
from IPython.display import HTML, display
import tf_pathattr as tpa
from tf_pathattr.demo import digits_model, load_digits_data

model, accuracy, _ = digits_model(quick=True)      # a small CNN on scikit-learn's digits (trained once, cached)
(_, _), (x_test, y_test) = load_digits_data()
print("test accuracy", accuracy)"""),
    new_markdown_cell(
        "## The sanity check on its own\n\n"
        "Re-initialise the layers from the output down and compare each new map with the trained model's "
        "(Spearman rank correlation; 1 = unchanged). Plain gradients lose the resemblance; a map that is the "
        "input itself keeps 1 at every layer."
    ),
    new_code_cell("""res = tpa.metrics.model_randomization(model, x_test[:8], method="gradients")
for name in res.similarity:
    print(f"{name:13s}", dict(zip(res.layers, np.round(res.mean(name), 3))))
same = tpa.metrics.model_randomization(model, x_test[:8], method=lambda m, x, t: x)
print("input as the map:", np.round(same.mean("spearman"), 3))"""),
    new_markdown_cell(
        "## The report\n\n`fast=True` uses each method's small registry options (a quick look); drop it for "
        "the methods' own defaults. The page is shown inline in an `iframe`; the file itself is `report.html`."
    ),
    new_code_cell("""path = tpa.report(model, x_test[:6], methods=["gradients", "ig", "smoothgrad", "eg", "xrai"],
                  labels=[f"digit {d}" for d in range(10)], out="report.html", fast=True, sanity_examples=2)
page = path.read_text()
print(path, f"{len(page) / 1024:.0f} KiB")
display(HTML(f'<iframe srcdoc="{html.escape(page)}" style="width: 100%; height: 900px; border: 0"></iframe>'))"""),
]


def write(name, cells):
    nb = new_notebook(
        cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("01_quickstart.ipynb", QUICKSTART)
    write("02_text_embeddings.ipynb", TEXT)
    write("03_savedmodel_and_callback.ipynb", WORKFLOWS)
    write("04_keras_hub_text.ipynb", KERAS_HUB)
    write("05_report.ipynb", REPORT)
