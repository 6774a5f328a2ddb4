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
    "(Locally: `pip install -e \".[dev]\"` in the repository.)"
)

QUICKSTART = [
    new_markdown_cell("# tf_pathattr quick start\n\nTrain a small CNN on scikit-learn's bundled digits, "
                      "explain it with every method, and check the attributions against their completeness targets."),
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
    new_markdown_cell("## Integrated Gradients and its completeness delta\n\n"
                      "`delta = sum(attr) - (F(x) - F(baseline))` per example; Gauss-Legendre makes it tiny."),
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
    new_markdown_cell("# Text models: attribution to the embedding layer\n\n"
                      "Token ids are integers and have no gradient, so we attribute to the output of the "
                      "`Embedding` layer with `layer=`. The label of this synthetic set is set by trigger "
                      "tokens, so we know which positions should light up."),
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
    new_markdown_cell("# SavedModels and training-time logging\n\n"
                      "Export a SavedModel that carries `explain_<method>` endpoints usable without tf_pathattr, "
                      "explain a reloaded SavedModel, and log attributions during `fit` with the Keras callback."),
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


def write(name, cells):
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("01_quickstart.ipynb", QUICKSTART)
    write("02_text_embeddings.ipynb", TEXT)
    write("03_savedmodel_and_callback.ipynb", WORKFLOWS)
