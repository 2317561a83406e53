"""The exact mixture models take one mixture per condition, as a mapping (found re-running the issue-20 probe:
a bare mixture or a list gave ``AttributeError: 'GaussianMixture' object has no attribute 'items'``)."""
import pytest

from analytic import GaussianMixture
from analytic.paths import MixtureVelocity
from sampler import LINEAR, MixtureModel


@pytest.mark.parametrize("build", [MixtureModel, lambda m: MixtureVelocity(m, LINEAR)],
                         ids=["MixtureModel", "MixtureVelocity"])
def test_a_bare_mixture_or_a_list_is_a_value_error_naming_mixtures(build):
    law = GaussianMixture([1.0], [[0.0]], [[[1.0]]])
    for bad, name in ((law, "GaussianMixture"), ([law], "list")):
        with pytest.raises(ValueError, match=rf"mixtures must be a mapping from condition to mixture, e.g. "
                                             rf"\{{None: law\}}, got {name}"):
            build(bad)
    assert build({None: law}).mixtures == {None: law}
