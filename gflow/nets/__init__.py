"""ReLU networks as Equinox modules: the interface (:class:`AbstractReLUNet`), the shallow,
MLP and DAG implementations, initialization schemes and relocation (Prop. 4)."""

from .base import AbstractReLUNet as AbstractReLUNet
from .base import require_relu_net as require_relu_net
from .dag import DAGNet as DAGNet
from .dag import Graph as Graph
from .fixed_output import FixedOutputReLU as FixedOutputReLU
from .fixed_output import fixed_output as fixed_output
from .mlp import MLP as MLP
from .schemes import Scheme as Scheme
from .schemes import get_scheme as get_scheme
from .schemes import kaiming as kaiming
from .schemes import normal as normal
from .schemes import xavier as xavier
from .shallow import ShallowReLU as ShallowReLU
from .spec import as_dag as as_dag
from .spec import model_from_spec as model_from_spec
from .spec import model_spec as model_spec
