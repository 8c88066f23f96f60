from iqa.models.methods import loda  # noqa: F401
from iqa.models.methods import qmamba  # noqa: F401
from iqa.models.methods import vp_mllm, vp_mplug  # noqa: F401
