"""ReLU networks as Equinox modules: the interface (:class:`AbstractReLUNet`), the shallow,
MLP and DAG implementations, initialization schemes and relocation (Prop. 4)."""

from .base import AbstractReLUNet as AbstractReLUNet, require_relu_net as require_relu_net
from .dag import DAGNet as DAGNet, Graph as Graph
from .mlp import MLP as MLP
from .schemes import Scheme as Scheme, get_scheme as get_scheme, kaiming as kaiming, normal as normal
from .schemes import xavier as xavier
from .shallow import ShallowReLU as ShallowReLU
from .spec import as_dag as as_dag, model_from_spec as model_from_spec, model_spec as model_spec
