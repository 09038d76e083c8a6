"""Stage construction by name: a `TrainConfig` and the networks -> the trainer, its schedules and its data stream.

    with strategy.scope():
        stage = build_stage("gan", config, networks, loss_scaled)
    StageLoop(stage.trainer, strategy, dataset_of(stage.batch_size, stage.data_seed), ..., stage.num_steps,
              stage.schedules, networks, ...)

`STAGES` maps a stage name to its builder. A new model family (or a new stage) adds one entry: a function
`(config, networks, loss_scaled, vgg) -> Stage` whose trainer offers what `StageLoop` calls (`critic_step`,
`generator_step`, `step_kind`, `optimizers`, `iteration`, `stage`, `build_optimizers`, `critic_warmup_steps`).
"""

import dataclasses

from expr3d.labels import NUM_EXPRESSIONS


@dataclasses.dataclass(frozen=True)
class Stage:
    """What the loop needs of one stage.

    Args:
        name: the stage's name (its run-directory folder and TensorBoard prefix).
        trainer: the compiled trainer, its optimizers built.
        schedules: `{optimizer key: LinearDecaySchedule}`.
        num_steps: iterations of the stage.
        batch_size: GLOBAL batch size of its data stream.
        data_seed: seed of its data stream (each stage draws its own).
    """

    name: str
    trainer: object
    schedules: dict
    num_steps: int
    batch_size: int
    data_seed: int


def _schedule(config, base_lr, num_steps):
    from expr3d.training.schedules import LinearDecaySchedule

    return LinearDecaySchedule(base_lr, num_steps, decay_start=int(config.lr_decay_start * num_steps),
                               decay_every=config.lr_decay_every)


def _optimizer(config, key, loss_scaled):
    """Adam of the network `key` (generators at --g_lr, critics at --d_lr)."""
    from expr3d.training import runtime

    return runtime.make_optimizer(_learning_rate(config, key), config.beta1, config.beta2, loss_scaled, key,
                                  epsilon=config.adam_epsilon, epsilon_mode=config.adam_epsilon_mode)


GENERATOR_KEYS = ("encoder", "decoder")  # the transfer family's generators (besides the g_* networks)


def _learning_rate(config, key):
    return config.g_lr if key.startswith("g") or key in GENERATOR_KEYS else config.d_lr


def depth_stage(config, networks, loss_scaled, vgg=None):
    """Stage 1: `DepthPretrainer` of G_depth/D_depth; `vgg` default: VGG19 from --vgg19_weights when the
    perceptual term is on."""
    from expr3d.training.depth_pretrainer import DepthPretrainer

    if vgg is None and config.perceptual_weight > 0:
        from expr3d.models import VGG19Features

        vgg = VGG19Features(weights=config.vgg19_weights)
    trainer = DepthPretrainer(
        networks["g_depth"], networks["d_depth"], vgg=vgg, n_critic=config.n_critic, lambda_cls=config.lambda_cls,
        lambda_gp=config.lambda_gp, lambda_pix=config.lambda_pix, lambda_rec=config.lambda_rec,
        perceptual_weight=config.perceptual_weight, confidence_penalty=config.confidence_penalty,
        confidence_penalty_on=config.confidence_penalty_on,
    )
    trainer.compile(g_optimizer=_optimizer(config, "g_depth", loss_scaled),
                    d_optimizer=_optimizer(config, "d_depth", loss_scaled))
    return _stage("depth", config, trainer, config.num_steps_depth, data_seed=config.seed)


def gan_stage(config, networks, loss_scaled, vgg=None):
    """Stage 2: `DepthGuidedStarGAN` of all four networks, end to end (`vgg` unused)."""
    from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN

    trainer = DepthGuidedStarGAN(
        **networks, num_classes=NUM_EXPRESSIONS, depth_weight=config.depth_weight, n_critic=config.n_critic,
        lambda_cls=config.lambda_cls, lambda_rec=config.lambda_rec, lambda_gp=config.lambda_gp,
        confidence_penalty=config.confidence_penalty, confidence_penalty_on=config.confidence_penalty_on,
        lambda_id=config.lambda_id, lambda_mask=config.lambda_mask, lambda_mask_tv=config.lambda_mask_tv,
        lambda_edit=config.lambda_edit,
        critic_warmup_steps=config.critic_warmup_steps, generator_warmup_steps=config.generator_warmup_steps,
        generator_warmup_cycle=config.generator_warmup_cycle,
        mask_penalty=config.mask_penalty,
        lambda_pair=config.lambda_pair, lambda_pair_gradient=config.lambda_pair_gradient, condition=config.condition,
        au_loss=config.au_loss, au_change_weight=config.au_change_weight,
        critic_augment=config.critic_augment, critic_fake_class=config.critic_fake_class,
        expression_guide=_expression_guide(config), lambda_guide=config.lambda_guide,
        lambda_guide_features=config.lambda_guide_features,
    )
    trainer.compile(optimizers={key: _optimizer(config, key, loss_scaled)
                                for key in ("g_rgb", "d_rgb", "g_depth", "d_depth")})
    if config.g_ema_decay > 0:
        from expr3d.models import build_generator
        from expr3d.training.ema import WeightAverage

        # Named as G_rgb: it is what models/g_rgb.keras holds.
        average = build_generator(config.model_config(), name=networks["g_rgb"].name)
        trainer.generator_average = WeightAverage(networks["g_rgb"], average, config.g_ema_decay)
        trainer.sample_generator = average
    return _stage("gan", config, trainer, config.num_steps_gan, data_seed=config.seed + 1)


def _expression_guide(config):
    """The frozen guide of `--expression_guide` (None without one): a classifier, or for transfer an AU regressor."""
    if not config.expression_guide:
        return None
    from expr3d.training.guide import load_guide

    return load_guide(config)


def transfer_stage(config, networks, loss_scaled, vgg=None):
    """The transfer family's second stage: `ExpressionTransferTrainer` of the `TRANSFER_KEYS` networks (`vgg`
    unused); --num_steps_gan iterations, the same data seed as the StarGAN's stage 2."""
    from expr3d.training.expression_transfer import ExpressionTransferTrainer

    trainer = ExpressionTransferTrainer(
        encoder=networks["encoder"], decoder=networks["decoder"], adversary=networks["adversary"],
        d_rgb=networks["d_rgb"], d_swap=networks["d_swap"], g_depth=networks["g_depth"],
        d_depth=networks["d_depth_au"], depth_weight=config.depth_weight, n_critic=config.n_critic,
        lambda_gp=config.lambda_gp, lambda_rec=config.lambda_rec, lambda_au=config.lambda_au,
        lambda_confusion=config.lambda_confusion, lambda_swap=config.lambda_swap, lambda_mask=config.lambda_mask,
        lambda_pair=config.lambda_pair, au_loss=config.au_loss, au_guide=_expression_guide(config),
        lambda_guide=config.lambda_guide, lambda_guide_features=config.lambda_guide_features,
        lambda_free_invariance=config.lambda_free_invariance, generator_warmup_steps=config.generator_warmup_steps,
        generator_warmup_cycle=config.generator_warmup_cycle, code_detached=config.transfer_code_detached,
        code_teacher=config.transfer_code_teacher,
    )
    trainer.compile({key: _optimizer(config, key, loss_scaled) for key in trainer.optimizer_keys})
    return _stage("transfer", config, trainer, config.num_steps_gan, data_seed=config.seed + 1)


def _stage(name, config, trainer, num_steps, data_seed):
    schedules = {key: _schedule(config, _learning_rate(config, key), num_steps) for key in trainer.optimizers}
    trainer.build_optimizers()
    return Stage(name=name, trainer=trainer, schedules=schedules, num_steps=num_steps,
                 batch_size=config.stage_batch_size(name), data_seed=data_seed)


# Stage name -> builder `(config, networks, loss_scaled, vgg) -> Stage`; `--stage` and `TrainConfig.stages()` name
# these.
STAGES = {"depth": depth_stage, "gan": gan_stage, "transfer": transfer_stage}


def build_stage(name, config, networks, loss_scaled, vgg=None):
    """The `Stage` `name` of `config` over `networks` (call inside `strategy.scope()`).

    Args:
        name: a key of `STAGES`.
        config: the run's `TrainConfig`.
        networks: `{name: keras.Model}` (`expr3d.models.build_models`).
        loss_scaled: wrap the optimizers in `LossScaleOptimizer` (mixed_float16).
        vgg: the perceptual network of stage 1 (default: built from the config when needed).
    """
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; known: {', '.join(sorted(STAGES))}")
    return STAGES[name](config, networks, loss_scaled, vgg=vgg)


__all__ = ["STAGES", "Stage", "build_stage"]
