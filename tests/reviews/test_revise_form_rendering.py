"""The revise forms' Python rendering of <input> widgets against Django's widget templates."""

import pytest
from django.forms.renderers import DjangoTemplates

from reviews.forms import (
    AddressReviseForm,
    CarrierCodeReviseForm,
    CarrierServiceReviseForm,
    SkuCodeReviseForm,
)

TRICKY = '<b>"O\'Hara" & Sons</b>'


def rendered_fields(form) -> list[str]:
    return [str(form[name]) for name in form.fields]


def with_template_renderer(form_class, **kwargs):
    return form_class(renderer=DjangoTemplates(), **kwargs)


@pytest.mark.parametrize(
    ("form_class", "kwargs"),
    [
        (AddressReviseForm, {"initial": {"name": TRICKY, "city": "Austin", "zip": ""}}),
        (AddressReviseForm, {"data": {"name": TRICKY, "country_code": "1"}}),
        (AddressReviseForm, {"data": {}, "auto_id": "revise-7-%s"}),
        (SkuCodeReviseForm, {"initial": {"sku": TRICKY}, "auto_id": "revise-8-%s"}),
        (CarrierServiceReviseForm, {"data": {"carrier_service": "ups"}}),
        (
            CarrierCodeReviseForm,
            {"services": [{"service_id": 3, "name": TRICKY}], "initial": {"service_id": 3}},
        ),
    ],
)
def test_inputs_match_django_templates(form_class, kwargs):
    fast = form_class(**kwargs)
    reference = with_template_renderer(form_class, **kwargs)

    assert rendered_fields(fast) == rendered_fields(reference)


def test_input_value_escaped():
    html = str(SkuCodeReviseForm(initial={"sku": TRICKY})["sku"])

    assert 'value="&lt;b&gt;&quot;O&#x27;Hara&quot; &amp; Sons&lt;/b&gt;"' in html
