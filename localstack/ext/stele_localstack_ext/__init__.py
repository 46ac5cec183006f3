"""A DynamoDB provider for LocalStack in host mode, served by moto.

LocalStack's own DynamoDB provider runs DynamoDB Local, a Java program it
downloads at first use together with a Java 21 runtime. Neither can be fetched
here (and DynamoDB Local is not open source), so `localstack/start.sh` puts
this directory on PYTHONPATH and selects this provider with
`PROVIDER_OVERRIDE_DYNAMODB=stele_moto`: every DynamoDB operation falls through
to moto (moto-ext, already a LocalStack dependency), in-process and pure Python.
The ingest tenant quota (conditional `UpdateItem` with `ADD`, `GetItem`) and
`stele dev` (CreateTable, UpdateTimeToLive) are what the project uses of it.
"""

from localstack.services.plugins import aws_provider


@aws_provider(api="dynamodb", name="stele_moto")
def dynamodb_moto():
    from localstack.aws.api.dynamodb import DynamodbApi
    from localstack.services.moto import MotoFallbackDispatcher
    from localstack.services.plugins import Service

    class DynamoDBMotoProvider(DynamodbApi):
        """No operation of its own: each one raises NotImplementedError and goes to moto."""

    return Service.for_provider(DynamoDBMotoProvider(), dispatch_table_factory=MotoFallbackDispatcher)
