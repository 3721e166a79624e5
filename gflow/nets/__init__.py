"""ReLU networks as Equinox modules: the interface (:class:`AbstractReLUNet`), the shallow,
MLP and DAG implementations, initialization schemes and relocation (Prop. 4)."""

from .dag import DAGNet as DAGNet, Graph as Graph
from .models import MLP as MLP, ShallowReLU as ShallowReLU, as_dag as as_dag, model_from_spec as model_from_spec
from .models import model_spec as model_spec
from .relocate import relocate as relocate
from .schemes import Scheme as Scheme, get_scheme as get_scheme, kaiming as kaiming, normal as normal
from .schemes import xavier as xavier
