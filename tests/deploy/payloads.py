"""The events AWS sends each function, shaped as AWS documents them (not as stele builds them
locally): API Gateway HTTP API payload 2.0 with a JWT authorizer, a Kinesis event source
mapping batch, and what EventBridge Scheduler passes (the target's `input`, verbatim)."""
import base64
import datetime as dt
import hashlib
import json
import time
import uuid


def api_gateway_v2(method, path, body=None, claims=None, route_key=None, headers=None):
    now_ms = int(time.time() * 1000)
    raw = json.dumps(body).encode() if body is not None else b""
    hdrs = {
        "accept": "*/*",
        "content-length": str(len(raw)),
        "host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "user-agent": "curl/8.5.0",
        "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
        "x-forwarded-for": "203.0.113.9",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if body is not None:
        hdrs["content-type"] = "application/json"
    if claims is not None:
        hdrs["authorization"] = "Bearer eyJraWQiOiJ0ZXN0In0.e30.sig"
    hdrs.update(headers or {})
    ctx = {
        "accountId": "123456789012",
        "apiId": "abc123",
        "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
        "domainPrefix": "abc123",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                 "sourceIp": "203.0.113.9", "userAgent": "curl/8.5.0"},
        "requestId": "JKJaXmPLvHcESHA=",
        "routeKey": route_key or f"{method} {path}",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now_ms / 1000)),
        "timeEpoch": now_ms,
    }
    if claims is not None:
        ctx["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    event = {
        "version": "2.0",
        "routeKey": route_key or f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": hdrs,
        "requestContext": ctx,
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = raw.decode()
    return event


def jwt_claims(tenant_claim, tenant):
    """What API Gateway's JWT authorizer puts in requestContext.authorizer.jwt.claims: every
    claim of the token, as strings."""
    now = int(time.time())
    return {
        "sub": "c0a8b1e2-0000-4000-8000-000000000001",
        "iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE",
        "aud": "example-client-id",
        "token_use": "access",
        "scope": "events/write",
        "auth_time": str(now - 60),
        "iat": str(now - 60),
        "exp": str(now + 3540),
        tenant_claim: tenant,
    }


def kinesis_batch(records, stream_arn, region="us-east-1", function_arn=None):
    """An event source mapping batch: `records` are dicts from Kinesis GetRecords
    (Data bytes, PartitionKey, SequenceNumber, ApproximateArrivalTimestamp), shard id."""
    out = []
    for shard_id, r in records:
        out.append({
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": r["PartitionKey"],
                "sequenceNumber": r["SequenceNumber"],
                "data": base64.b64encode(r["Data"]).decode(),
                "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{r['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/stele-batch-writer-role",
            "awsRegion": region,
            "eventSourceARN": stream_arn,
        })
    return {"Records": out}


def sqs_event(messages, queue_arn, region="us-east-1"):
    """What an SQS event source mapping sends: the received messages, as records."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
        "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region,
    } for m in messages]}


def new_event(tenant, action="user.login"):
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "category": "security",
        "action": action,
        "outcome": "success",
        "actor": {"id": "u-42", "type": "user", "ip": "203.0.113.9"},
        "source": {"service": "contract-test"},
        "tenant_id": tenant,
    }


def canonical(value):
    """RFC 8785 canonical JSON for the ASCII strings and small integers these events hold."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339_micros(t):
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sealed_record(tenant, occurred_at, received_at, sequence, action="user.login"):
    """A Kinesis record as ingest writes it: the event's canonical JSON with `event_hash`
    (SHA-256 of the canonical event without `received_at`)."""
    event = {
        "event_id": str(uuid.uuid4()),
        "tenant_id": tenant,
        "occurred_at": rfc3339_micros(occurred_at),
        "category": "audit",
        "action": action,
        "outcome": "success",
        "actor": {"id": "u-42", "type": "user"},
        "source": {"service": "contract-test"},
        "schema_version": 1,
    }
    digest = hashlib.sha256(canonical(event)).hexdigest()
    record = dict(event, received_at=rfc3339_micros(received_at), event_hash=digest)
    return {
        "Data": canonical(record),
        "PartitionKey": tenant,
        "SequenceNumber": sequence,
        "ApproximateArrivalTimestamp": received_at,
    }
