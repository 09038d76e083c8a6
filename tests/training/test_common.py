"""common.apply_updates: after Grappler has optimized a train step, every variable read is still ordered with respect
to every write of that variable.

The bug this guards against (#3, "the critic step is not always reproducible"): in the gradient-penalty pass a
critic's bias reaches the penalty only through LeakyReLU masks, whose derivative is `zeros_like(features)`.
Grappler's constant folding turns that into a constant and its dependency optimizer then drops the write-after-read
control edges that `tf.function` had added, so the SGD/Adam update of the bias could run BEFORE the penalty's
forward pass read it. Which one ran first depended on the executor's schedule: about 1 execution in 25 gave another
d_gp. The check below runs Grappler (the same meta-optimizer `tf.function` uses) on the traced step and looks at the
optimized graph itself, so it is deterministic rather than a matter of luck.
"""
import collections

import keras
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.framework import meta_graph
from tensorflow.python.grappler import tf_optimizer  # private, but it is the optimizer tf.function runs

from tests.training.helpers import fixed_batch, sgd_one_step_trainer, tiny_networks


def unordered_reads(graph_def):
    """(read, write) node pairs on the same resource where neither node is an ancestor of the other."""
    inputs = {node.name: [name.lstrip("^").split(":")[0] for name in node.input] for node in graph_def.node}

    def ancestors(name):
        seen, stack = set(), [name]
        while stack:
            for parent in inputs.get(stack.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    reads = collections.defaultdict(list)
    for node in graph_def.node:
        if node.op == "ReadVariableOp":
            reads[node.input[0]].append(node.name)
    pairs = []
    for node in graph_def.node:
        writes = node.op.startswith("ResourceApply") or (node.op.startswith("Assign") and node.op.endswith("VariableOp"))
        if not writes:
            continue
        before = ancestors(node.name)
        for read in reads[node.input[0]]:
            if read not in before and node.name not in ancestors(read):
                pairs.append((read, node.name))
    return pairs


def optimized(concrete_function):
    graph = concrete_function.graph
    meta = meta_graph.create_meta_graph_def(graph=graph)
    for tensor in graph.outputs:
        meta.collection_def["train_op"].node_list.value.append(tensor.name)
    return graph.as_graph_def(), tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta, graph_id=b"step")


def adam_trainer(stage, networks):
    trainer = sgd_one_step_trainer(stage, networks)
    adam = lambda name: keras.optimizers.Adam(1e-4, 0.5, 0.999, name=name)  # noqa: E731
    if stage == "depth":
        trainer.compile(g_optimizer=adam("g"), d_optimizer=adam("d"))
    else:
        trainer.compile(optimizers={key: adam(key) for key in networks})
    trainer.build_optimizers()
    return trainer


@pytest.mark.slow  # in-process; Grappler on every traced train step: 27-63 s per case here under load
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("stage", ["depth", "gan"])
def test_no_variable_read_races_its_update_after_grappler(tiny_dataset, stage, optimizer):
    batch = fixed_batch(tiny_dataset)
    make = sgd_one_step_trainer if optimizer == "sgd" else adam_trainer
    trainer = make(stage, tiny_networks())
    for step in (trainer.critic_step, trainer.generator_step):
        traced, after_grappler = optimized(tf.function(step).get_concrete_function(batch))
        assert unordered_reads(traced) == []  # tf.function's own control edges order them
        assert unordered_reads(after_grappler) == [], step.__name__


def test_the_check_sees_a_read_left_unordered():
    """The checker itself: a read that no write waits for is reported; an ordered one is not."""
    variable = tf.Variable(1.0)

    @tf.function
    def step():
        value = variable.read_value()  # tf.function orders it before the write below
        variable.assign_sub(0.5)
        return value

    traced, _ = optimized(step.get_concrete_function())
    assert unordered_reads(traced) == []
    graph_def = traced
    for node in graph_def.node:  # drop the control edges tf.function added: now nothing orders the read
        kept = [name for name in node.input if not name.startswith("^")]
        del node.input[:]
        node.input.extend(kept)
    pairs = unordered_reads(graph_def)
    assert len(pairs) == 1 and pairs[0][1].endswith("AssignSubVariableOp"), pairs
