"""Reference trainables in numpy: the training recipe that hpsearch automates.

Imports nothing from ``hpsearch`` or ``storage``: each trainable is a plain generator that
anyone can call in a loop::

    from trainables.mlp import train
    for metrics in train({"lr": 3e-3, "hidden": 100}, epochs=10, seed=0):
        print(metrics["val_acc"])

Trainables (hpsearch short name -> module): ``softmax`` -> :mod:`trainables.softmax`,
``svm`` -> :mod:`trainables.svm`, ``mlp`` -> :mod:`trainables.mlp`, ``synthetic`` ->
:mod:`trainables.synthetic` (known optimum, no training). Each ``train`` docstring lists its
params and defaults; an unknown param raises ``ValueError`` naming it.

Per-epoch metrics of softmax, svm and mlp (all floats):

================  ==========================================================================
train_loss        mean minibatch objective (data loss + L2 penalty) over the epoch, as trained
train_acc         accuracy on the epoch's minibatches, as trained (dropout on)
val_loss          data loss on the fixed validation split (no penalty, no dropout)
val_acc           accuracy on the validation split
lr                learning rate used in the epoch (after annealing)
seconds           wall time of the epoch, evaluation included
grad_norm/<W>     L2 norm of the gradient of weight matrix ``<W>`` at the epoch's last step
update_ratio/<W>  ``|update| / |W|`` at the epoch's last step (the recipe wants ~1e-3)
act_mean/h<i>     mean of hidden layer ``i``'s ReLU output on the validation split (mlp only)
act_std/h<i>      its standard deviation (collapsing towards 0 = bad init, e.g. std 0.01)
val_acc_avg       accuracy of the running average of the weights (``avg_decay`` > 0 only)
val_loss_avg      its data loss
================  ==========================================================================

Checkpoints: ``train(params, epochs=..., seed=..., checkpoint_dir=DIR)`` writes each epoch's
checkpoint into ``DIR`` (``model.npz`` + ``state.json``, no pickles) before yielding that
epoch's metrics; ``restore_dir=DIR`` continues from such a checkpoint, from the epoch after
it, exactly as if training had not stopped. ``predict(params, checkpoint_dir=DIR,
split="val"|"test")`` returns class probabilities and labels, ``first_layer(params,
checkpoint_dir=DIR)`` the first layer's weights as images ``(units, H, W[, C])``.

Weight names: ``W`` for the linear models, ``W1 .. W{L+1}`` for an mlp with ``L`` hidden
layers (``W{L+1}`` feeds the scores); hidden layers are ``h1 .. hL``.

Hopeless trials stop early: a non-finite loss, or an epoch's ``train_loss`` above 3x the
initial loss, raises the builtin ``FloatingPointError`` with the reason (e.g.
``"train_loss 7.1 > 3x initial 2.303 at epoch 2"``); hpsearch records it as ``diverged``.

Sanity checks before training (gradient check, initial loss, overfitting 20 examples):
:func:`trainables.checks.run_checks`, also ``hpsearch check TRAINABLE --param k=v``.
"""

__all__ = [
    "checkpoint",
    "checks",
    "data",
    "mlp",
    "models",
    "optim",
    "schedules",
    "softmax",
    "svm",
    "synthetic",
]
