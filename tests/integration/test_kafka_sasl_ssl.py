"""The repo's own Kafka with only a SASL_SSL listener (SCRAM-SHA-512) and a certificate from a CA made at
test time (issue 24) really is secured: the documented settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE) get in; a wrong password, a client without the CA
and a plaintext client do not. The four services through it (and through a TLS-only PostgreSQL):
tests/integration/test_secured_stack.py.
"""

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from common.settings import CommonSettings
from common.wire.kafka import connection_options
from tests import secured_services

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def secured_kafka(tmp_path):
    with secured_services.secured_kafka(tmp_path) as settings:
        yield settings


async def bootstraps(settings: CommonSettings) -> bool:
    """Whether an admin client with these settings gets the cluster's metadata (and so past TLS and SASL)."""
    admin = AIOKafkaAdminClient(**connection_options(settings), request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 30)
    except KafkaConnectionError:
        return False
    await admin.close()
    return True


def test_the_broker_refuses_wrong_credentials_no_ca_and_plaintext(secured_kafka):
    good = CommonSettings(**secured_kafka)
    assert asyncio.run(bootstraps(good))
    wrong = CommonSettings(**{**secured_kafka, "kafka_sasl_password": "not-" + secured_kafka["kafka_sasl_password"]})
    assert not asyncio.run(bootstraps(wrong))
    no_ca = CommonSettings(**{**secured_kafka, "kafka_ssl_cafile": None})  # the system store does not know our CA
    assert not asyncio.run(bootstraps(no_ca))
    plaintext = CommonSettings(**{**secured_kafka, "kafka_security_protocol": "PLAINTEXT"})
    assert not asyncio.run(bootstraps(plaintext))
