"""The model contract (:mod:`~diffkit.models.contract`) and conditioning
(:mod:`~diffkit.models.conditioning`): what samplers see of any network, own or foreign."""

from diffkit.models.conditioning import Cond, ConditionKind, class_cond
from diffkit.models.contract import DDPMModel, Family, FlowModel, Model

__all__ = ["Cond", "ConditionKind", "DDPMModel", "Family", "FlowModel", "Model", "class_cond"]
