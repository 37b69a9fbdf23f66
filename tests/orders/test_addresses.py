"""Address validation: per-country rules, scores, reason codes and the normalised address."""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from orders.addresses import address_min_score, address_validate

BASES = {
    "US": {"address1": "12 Birch Lane", "city": "Austin", "province_code": "TX", "zip": "78701"},
    "CA": {
        "address1": "73 Larkspur Crescent",
        "city": "Toronto",
        "province_code": "ON",
        "zip": "M4J 3K8",
    },
    "QC": {
        "address1": "1 rue Sherbrooke",
        "city": "Montréal",
        "province": "Québec",
        "zip": "H3Z 2Y7",
    },
    "DE": {"address1": "Lindenhainweg 27", "city": "Berlin", "zip": "10437"},
    "FR": {"address1": "12 rue de la Paix", "city": "Paris", "zip": "75002"},
    "GB": {"address1": "10 Downing Street", "city": "London", "zip": "SW1A 2AA"},
    "NL": {"address1": "Damrak 1", "city": "Amsterdam", "zip": "1012 LG"},
    "IE": {"address1": "1 Main Street", "city": "Dublin"},
    "HK": {"address1": "1 Nathan Road", "city": "Tsim Sha Tsui", "province": "Kowloon"},
    "JP": {"address1": "若葉台 4-12-3", "province": "東京都", "zip": "158-0099"},
    "CN": {"address1": "建国路 88号", "city": "朝阳区", "province": "北京市", "zip": "100022"},
    "KR": {"address1": "테헤란로 152", "city": "강남구", "province": "서울특별시", "zip": "06236"},
    "RU": {
        "address1": "ул. Тверская, д. 7",
        "city": "Москва",
        "province": "Москва",
        "zip": "125009",
    },
    "AU": {"address1": "1 George St", "city": "Sydney", "province_code": "NSW", "zip": "2000"},
    "BR": {
        "address1": "Av. Paulista, 1000",
        "city": "São Paulo",
        "province_code": "SP",
        "zip": "01310-100",
    },
    "MX": {
        "address1": "Av. Juárez 1",
        "city": "Guadalajara",
        "province_code": "JAL",
        "zip": "44100",
    },
    "IT": {"address1": "Via Roma 1", "city": "Roma", "province_code": "RM", "zip": "00184"},
    "ES": {"address1": "Calle Mayor 1", "city": "Madrid", "province": "Madrid", "zip": "28013"},
    "IN": {"address1": "1 MG Road", "city": "Bengaluru", "province_code": "KA", "zip": "560001"},
    "CH": {"address1": "Bahnhofstrasse 1", "city": "Zürich", "zip": "8001"},
    "PL": {"address1": "ul. Marszałkowska 1", "city": "Warszawa", "zip": "00-950"},
}


def addr(base: str, **fields) -> dict:
    """A valid address of the base country with `fields` changed; None removes a field."""
    country = base if base != "QC" else "CA"
    address = {"name": "Ada Quill", **BASES[base], "country_code": country} | fields
    return {name: value for name, value in address.items() if value is not None}


def us(**fields) -> dict:
    return addr("US", **fields)


# (case, address, score, reason codes in order). Scores: 1.00 less 0.30 per error and 0.05
# per warning; an unknown country scores 0.
SCORE_CASES = [
    ("us_valid", us(), "1.00", []),
    (
        "us_state_name_lower_case",
        us(province_code=None, province="california", zip="94105"),
        "1.00",
        [],
    ),
    (
        "us_state_ap_abbreviation",
        us(province_code=None, province="Calif.", zip="94105"),
        "0.95",
        ["country_area_variant"],
    ),
    (
        "us_unknown_state_code_known_name",
        us(province_code="XX", province="Texas"),
        "0.95",
        ["country_area_variant"],
    ),
    ("us_state_missing", us(province_code=None), "0.70", ["country_area_missing"]),
    ("us_state_invalid", us(province_code="ZZ"), "0.70", ["country_area_invalid"]),
    (
        "us_state_code_and_name_disagree",
        us(province="California"),
        "0.70",
        ["country_area_mismatch"],
    ),
    ("us_zip_of_other_state", us(zip="94105"), "0.70", ["postal_code_area_mismatch"]),
    ("us_zip_too_short", us(zip="7870"), "0.70", ["postal_code_invalid"]),
    ("us_zip_missing", us(zip=""), "0.70", ["postal_code_missing"]),
    ("us_zip_plus_four_without_hyphen", us(zip="787011234"), "0.95", ["postal_code_reformatted"]),
    ("us_no_house_number", us(address1="Birch Lane"), "0.70", ["street_number_missing"]),
    ("us_po_box", us(address1="PO Box 123"), "1.00", []),
    ("us_street_missing", us(address1=""), "0.70", ["street_missing"]),
    ("us_city_missing", us(city=None), "0.70", ["city_missing"]),
    ("us_name_missing", us(name=""), "0.95", ["name_missing"]),
    ("us_name_from_first_and_last", us(name=None, first_name="Ada", last_name="Quill"), "1.00", []),
    (
        "us_two_errors",
        us(province_code=None, zip=None),
        "0.40",
        ["country_area_missing", "postal_code_missing"],
    ),
    ("country_missing", us(country_code=None), "0.00", ["country_missing"]),
    ("country_code_unknown", us(country_code="XX"), "0.00", ["country_invalid"]),
    (
        "country_name_unknown",
        us(country_code=None, country="Atlantis"),
        "0.00",
        ["country_invalid"],
    ),
    ("country_name_contradicts_code", us(country="Canada"), "0.70", ["country_mismatch"]),
    ("country_name_consistent_with_code", us(country="United States"), "1.00", []),
    # Canada: province required, postcode A1A 1A1 whose first letter belongs to the province.
    ("ca_valid", addr("CA"), "1.00", []),
    ("ca_postcode_without_space", addr("CA", zip="m4j3k8"), "0.95", ["postal_code_reformatted"]),
    ("ca_french_province_name", addr("QC"), "1.00", []),
    (
        "ca_postcode_of_other_province",
        addr("QC", province=None, province_code="ON"),
        "0.70",
        ["postal_code_area_mismatch"],
    ),
    # Germany, France, Great Britain, the Netherlands: no subdivision in the address at all.
    ("de_valid_without_state", addr("DE"), "1.00", []),
    ("de_state_sent_anyway", addr("DE", province="Berlin"), "1.00", []),
    (
        "de_country_name_only",
        addr("DE", country_code=None, country="Deutschland"),
        "0.95",
        ["country_name_variant"],
    ),
    ("de_postcode_four_digits", addr("DE", zip="1043"), "0.70", ["postal_code_invalid"]),
    ("fr_valid", addr("FR"), "1.00", []),
    ("fr_city_missing", addr("FR", city=None), "0.70", ["city_missing"]),
    (
        "gb_valid_with_county",
        addr("GB", city="Canterbury", province="Kent", zip="CT1 2AA"),
        "1.00",
        [],
    ),
    ("gb_postcode_without_space", addr("GB", zip="sw1a2aa"), "0.95", ["postal_code_reformatted"]),
    ("gb_postcode_truncated", addr("GB", zip="SW1A 2A"), "0.70", ["postal_code_invalid"]),
    (
        "gb_country_name_uk",
        addr("GB", country_code=None, country="UK"),
        "0.95",
        ["country_name_variant"],
    ),
    ("nl_valid", addr("NL"), "1.00", []),
    (
        "nl_postcode_compact_lower_case",
        addr("NL", zip="1012lg"),
        "0.95",
        ["postal_code_reformatted"],
    ),
    ("nl_postcode_letters_sa", addr("NL", zip="1012 SA"), "0.70", ["postal_code_invalid"]),
    # Ireland: Eircode and county are optional; Hong Kong has no postcodes.
    ("ie_without_eircode_or_county", addr("IE"), "1.00", []),
    (
        "ie_unknown_county_is_a_warning",
        addr("IE", province="Atlantis"),
        "0.95",
        ["country_area_invalid"],
    ),
    ("hk_without_postcode", addr("HK"), "1.00", []),
    ("hk_area_missing", addr("HK", province=None), "0.70", ["country_area_missing"]),
    # Japan: prefecture and postcode required; the city is part of the street lines.
    (
        "jp_sample_latin_prefecture",
        addr("JP", city="世田谷区", province="Tokyo", province_code="JP-13"),
        "1.00",
        [],
    ),
    ("jp_native_prefecture", addr("JP"), "1.00", []),
    ("jp_postcode_without_hyphen", addr("JP", zip="1580099"), "0.95", ["postal_code_reformatted"]),
    (
        "jp_postcode_of_other_prefecture",
        addr("JP", province=None, province_code="JP-27"),
        "0.70",
        ["postal_code_area_mismatch"],
    ),
    ("jp_prefecture_missing", addr("JP", province=None), "0.70", ["country_area_missing"]),
    # China, Korea, Russia: non-Latin scripts, and Latin transliterations of them.
    ("cn_native_with_2017_iso_code", addr("CN", province_code="BJ"), "1.00", []),
    (
        "cn_pinyin_prefix_of_province",
        addr("CN", city="Chaoyang Qu", province="Beijing"),
        "0.95",
        ["country_area_variant"],
    ),
    ("cn_city_not_in_list", addr("CN", city="北京"), "0.95", ["city_unrecognised"]),
    ("kr_native", addr("KR"), "1.00", []),
    (
        "kr_romanised",
        addr("KR", city="Gangnam-gu", province="Seoul", province_code="KR-11"),
        "1.00",
        [],
    ),
    ("ru_cyrillic", addr("RU"), "1.00", []),
    (
        "ru_postcode_of_other_region",
        addr("RU", zip="190000"),
        "0.70",
        ["postal_code_area_mismatch"],
    ),
    # Australia, Brazil, Mexico: required subdivisions with codes and names.
    ("au_state_name", addr("AU", province_code=None, province="New South Wales"), "1.00", []),
    (
        "au_postcode_of_other_state",
        addr("AU", province_code="VIC"),
        "0.70",
        ["postal_code_area_mismatch"],
    ),
    ("br_valid", addr("BR"), "1.00", []),
    (
        "br_postcode_without_hyphen_no_accent",
        addr("BR", city="Sao Paulo", zip="01310100"),
        "0.95",
        ["postal_code_reformatted"],
    ),
    ("br_state_missing", addr("BR", province_code=None), "0.70", ["country_area_missing"]),
    ("mx_state_code", addr("MX"), "1.00", []),
    (
        "mx_state_name",
        addr(
            "MX",
            city="Ciudad de México",
            province_code=None,
            province="Ciudad de México",
            zip="06600",
        ),
        "1.00",
        [],
    ),
    # Italy, Spain, India, Switzerland, Poland.
    ("it_province_code", addr("IT"), "1.00", []),
    ("es_province_name", addr("ES"), "1.00", []),
    ("in_state_code", addr("IN"), "1.00", []),
    (
        "ch_native_country_name",
        addr("CH", country_code=None, country="Schweiz"),
        "0.95",
        ["country_name_variant"],
    ),
    ("pl_postcode_without_hyphen", addr("PL", zip="00950"), "0.95", ["postal_code_reformatted"]),
    # Exactly four warnings: the default threshold's boundary.
    (
        "four_warnings",
        us(
            name=None,
            country_code=None,
            country="USA",
            province_code=None,
            province="Calif.",
            zip="941051234",
        ),
        "0.80",
        ["country_name_variant", "name_missing", "country_area_variant", "postal_code_reformatted"],
    ),
]


@pytest.mark.parametrize(
    ("address", "score", "codes"),
    [case[1:] for case in SCORE_CASES],
    ids=[case[0] for case in SCORE_CASES],
)
def test_address_score_and_reasons(address, score, codes):
    result = address_validate(address)

    assert [reason.code for reason in result.reasons] == codes
    assert result.score == Decimal(score)


def test_address_cases_cover_fifteen_countries():
    countries = {
        address.get("country_code") or address.get("country") for _, address, _, _ in SCORE_CASES
    }

    assert len(countries - {"", "XX", "Atlantis", "USA", "UK", "Deutschland", "Schweiz"}) >= 15


# (case, address, the normalised fields that differ from the address as received).
NORMALISATION_CASES = [
    (
        "us_suffix_street_to_usps",
        us(address1="2417 Bramblewood Street"),
        {"address1": "2417 Bramblewood St", "city": "AUSTIN", "province": "Texas"},
    ),
    (
        "us_suffix_st_dot",
        us(address1="2417 Bramblewood St."),
        {"address1": "2417 Bramblewood St", "city": "AUSTIN", "province": "Texas"},
    ),
    (
        "us_suffix_already_standard",
        us(address1="88 Quillmoor St", address2="Apt 3B"),
        {"city": "AUSTIN", "province": "Texas"},
    ),
    (
        "us_state_name_to_code",
        us(province_code=None, province="Calif.", zip="94105"),
        {
            "address1": "12 Birch Ln",
            "city": "AUSTIN",
            "province": "California",
            "province_code": "CA",
        },
    ),
    (
        "us_zip_plus_four",
        us(zip="787011234"),
        {"address1": "12 Birch Ln", "city": "AUSTIN", "province": "Texas", "zip": "78701-1234"},
    ),
    (
        "gb_postcode_spaced_and_upper",
        addr("GB", zip="sw1a2aa"),
        {"city": "LONDON", "zip": "SW1A 2AA"},
    ),
    (
        "ca_upper_case_street_and_postcode",
        addr("CA", zip="m4j3k8"),
        {
            "address1": "73 LARKSPUR CRESCENT",
            "city": "TORONTO",
            "province": "Ontario",
            "zip": "M4J 3K8",
        },
    ),
    (
        "de_country_code_from_name",
        addr("DE", country_code=None, country="Deutschland"),
        {"city": "BERLIN", "country_code": "DE"},
    ),
    (
        "jp_prefecture_code_from_native_name",
        addr("JP", zip="1580099"),
        {"province_code": "JP-13", "zip": "158-0099"},
    ),
    (
        "cn_province_from_pinyin_prefix",
        addr("CN", city="Chaoyang Qu", province="Beijing"),
        {"province": "Beijing Shi", "province_code": "CN-11"},
    ),
    (
        "ie_county_to_iso_code",
        addr("IE", province="Co. Dublin"),
        {"city": "DUBLIN", "province_code": "D"},
    ),
    (
        "whitespace_collapsed",
        addr("NL", address1="  Damrak   1 "),
        {"address1": "Damrak 1", "city": "AMSTERDAM"},
    ),
]


@pytest.mark.parametrize(
    ("address", "changes"),
    [case[1:] for case in NORMALISATION_CASES],
    ids=[case[0] for case in NORMALISATION_CASES],
)
def test_address_normalisation(address, changes):
    result = address_validate(address)

    assert {name: result.normalized[name] for name in result.changed_fields} == changes
    assert {name: address.get(name) for name in address if name not in changes} == {
        name: result.normalized[name] for name in address if name not in changes
    }


def test_reasons_name_field_severity_and_message():
    result = address_validate(us(zip="94105", province="Calif.", province_code=""))

    assert result.reasons_as_dicts() == [
        {
            "code": "country_area_variant",
            "field": "province",
            "message": "State 'Calif.' read as CA.",
            "severity": "warning",
        },
    ]
    result = address_validate(us(zip="94105"))
    assert result.reasons_as_dicts() == [
        {
            "code": "postal_code_area_mismatch",
            "field": "zip",
            "message": "ZIP code '94105' is not used in Texas but in California. "
            "Check whether the ZIP code or the state is wrong.",
            "severity": "error",
        },
    ]


def test_parsed_fields_use_the_data_terms():
    result = address_validate(
        {
            "name": "森川 遥",
            "address1": "若葉台 4-12-3",
            "address2": "コーポ桜 201",
            "province": "Tokyo",
            "zip": "158-0099",
            "country_code": "JP",
        }
    )

    assert result.parsed == {
        "country_code": "JP",
        "name": "森川 遥",
        "company_name": "",
        "street_address": "若葉台 4-12-3\nコーポ桜 201",
        "city": "",
        "country_area": "東京都",
        "postal_code": "158-0099",
    }


def test_us_street_parts_are_parsed():
    result = address_validate(us(address1="88 Quillmoor Street", address2="Apt 3B"))

    assert result.parsed["street_parts"] == {
        "AddressNumber": "88",
        "StreetName": "Quillmoor",
        "StreetNamePostType": "Street",
        "OccupancyType": "Apt",
        "OccupancyIdentifier": "3B",
    }


def test_comparison_lists_received_and_suggested():
    result = address_validate(
        {"address1": "10 Downing Street", "city": "London", "zip": "sw1a2aa", "country_code": "GB"}
    )

    rows = [
        (row["field"], row["received"], row["suggested"], row["changed"])
        for row in result.comparison()
    ]
    assert rows == [
        ("address1", "10 Downing Street", "10 Downing Street", False),
        ("city", "London", "LONDON", True),
        ("zip", "sw1a2aa", "SW1A 2AA", True),
        ("country_code", "GB", "GB", False),
    ]


def test_comparison_marks_what_normalising_leaves_wrong():
    # Normalising upper-cases the city and shortens "Lane", but the ZIP code is California's.
    address = BASES["US"] | {"name": "Ada Quill", "zip": "94105", "country_code": "US"}

    result = address_validate(address)

    unresolved = {row["field"]: row["unresolved"] for row in result.comparison()}
    assert result.score == Decimal("0.70")
    assert unresolved["zip"] == [
        "ZIP code '94105' is not used in Texas but in California. "
        "Check whether the ZIP code or the state is wrong."
    ]
    assert unresolved["city"] == []
    assert unresolved["address1"] == []
    assert [reason.code for reason in result.unresolved_reasons()] == ["postal_code_area_mismatch"]


def test_comparison_of_a_fixing_suggestion_has_nothing_unresolved(settings):
    # Four warnings score 0.80; normalising fixes three of them, leaving only the missing name.
    settings.OMSGUARD_ADDRESS_MIN_SCORE = "0.81"
    address = {
        "address1": "1 Market Street",
        "city": "San Francisco",
        "province": "Calif.",
        "zip": "941051234",
        "country": "USA",
    }

    result = address_validate(address)

    assert result.score == Decimal("0.80")
    assert result.unresolved_reasons() == []
    assert all(row["unresolved"] == [] for row in result.comparison())


def test_comparison_adds_row_for_missing_field_still_wrong():
    result = address_validate({"address1": "12 Birch Lane", "city": "Austin", "country_code": "US"})

    rows = {row["field"]: row for row in result.comparison()}
    assert rows["zip"] == {
        "field": "zip",
        "received": "",
        "suggested": "",
        "changed": False,
        "unresolved": ["No ZIP code, but US addresses need one."],
    }


def test_unresolved_reasons_include_low_warnings(settings):
    # A missing name cannot be normalised away; alone it scores 0.95.
    settings.OMSGUARD_ADDRESS_MIN_SCORE = "0.96"

    result = address_validate(BASES["US"] | {"country_code": "US"})

    assert result.score == Decimal("0.95")
    assert [reason.code for reason in result.unresolved_reasons()] == ["name_missing"]
    assert {row["field"]: row["unresolved"] for row in result.comparison()}["name"] == [
        "No recipient name."
    ]


@pytest.mark.parametrize(("setting", "expected"), [("0.9", "0.9"), ("0", "0"), ("1", "1")])
def test_min_score_comes_from_setting(settings, setting, expected):
    settings.OMSGUARD_ADDRESS_MIN_SCORE = setting

    assert address_min_score() == Decimal(expected)


def test_min_score_default_is_080(settings):
    assert settings.OMSGUARD_ADDRESS_MIN_SCORE == "0.80"
    assert address_min_score() == Decimal("0.80")


@pytest.mark.parametrize("value", ["1.5", "-0.1", "high"])
def test_min_score_out_of_range_raises(settings, value):
    settings.OMSGUARD_ADDRESS_MIN_SCORE = value

    with pytest.raises(ImproperlyConfigured) as raised:
        address_min_score()

    assert str(raised.value) == (
        f"OMSGUARD_ADDRESS_MIN_SCORE must be a number from 0 to 1, got {value!r}."
    )
