"""Postcode messages: what is wrong with the postcode, and what a valid one looks like."""

import pytest

from orders.address_data import areas_using_postal_code, country_display_name
from orders.addresses import ReasonCode, address_validate


def zip_messages(country_code: str, zip_code: str, **fields: str) -> list[tuple[str, str]]:
    address = {
        "name": "Dana Reyes",
        "address1": "12 Birch Lane",
        "city": "Springfield",
        "country_code": country_code,
        "zip": zip_code,
        **fields,
    }
    result = address_validate(address)
    return [(reason.code, reason.message) for reason in result.reasons if reason.field == "zip"]


@pytest.mark.parametrize("state", ["CA", "NY"])
def test_short_zip_names_country_format(state):
    messages = zip_messages("US", "9021", province_code=state)

    # The same message whatever the state, because the format is the country's.
    assert messages == [
        (
            ReasonCode.POSTAL_CODE_INVALID,
            "ZIP code '9021' has 4 digits, but ZIP codes in US (United States) look like "
            "95014 or 22162-1010.",
        )
    ]


def test_letters_in_zip_named_invalid_format():
    messages = zip_messages("US", "ABCDE", province_code="CA")

    assert messages == [
        (
            ReasonCode.POSTAL_CODE_INVALID,
            "ZIP code 'ABCDE' has an invalid format. ZIP codes in US (United States) look like "
            "95014 or 22162-1010.",
        )
    ]


def test_digits_for_letter_postcode_no_digit_count():
    # Canadian postcodes have letters, so counting the digits would not help.
    messages = zip_messages("CA", "1234", city="Toronto", province_code="ON")

    assert messages == [
        (
            ReasonCode.POSTAL_CODE_INVALID,
            "Postcode '1234' has an invalid format. Postcodes in CA (Canada) look like "
            "H3Z 2Y7 or V8X 3X4.",
        )
    ]


def test_zip_of_other_state_names_it():
    messages = zip_messages("US", "10001", city="Los Angeles", province_code="CA")

    assert messages == [
        (
            ReasonCode.POSTAL_CODE_AREA_MISMATCH,
            "ZIP code '10001' is not used in California but in New York. Check whether the "
            "ZIP code or the state is wrong.",
        )
    ]


def test_area_type_follows_country():
    messages = zip_messages("AU", "3000", city="Sydney", province_code="NSW")

    assert messages == [
        (
            ReasonCode.POSTAL_CODE_AREA_MISMATCH,
            "Postcode '3000' is not used in New South Wales but in Victoria. Check whether "
            "the postcode or the state is wrong.",
        )
    ]


def test_zip_of_no_state_says_so():
    messages = zip_messages("US", "00001", city="Los Angeles", province_code="CA")

    assert messages == [
        (
            ReasonCode.POSTAL_CODE_AREA_MISMATCH,
            "ZIP code '00001' is not used in California or in any other US state.",
        )
    ]


def test_valid_zip_has_no_message():
    assert zip_messages("US", "90210", city="Beverly Hills", province_code="CA") == []


@pytest.mark.parametrize(
    ("postal_code", "expected"),
    [
        ("10001", ["New York"]),
        ("94105", ["California"]),
        ("20001", ["District of Columbia"]),
        ("00001", []),
    ],
)
def test_areas_using_postal_code(postal_code, expected):
    names = [area.name for area in areas_using_postal_code("US", postal_code)]

    assert names == expected


@pytest.mark.parametrize(
    ("country_code", "expected"),
    [
        ("US", "United States"),
        ("BA", "Bosnia and Herzegovina"),
        ("CI", "Cote D'Ivoire"),
    ],
)
def test_country_display_name(country_code, expected):
    assert country_display_name(country_code) == expected
