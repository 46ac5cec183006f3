"""Smoke test for a running LocalStack: Kinesis, S3, SQS.

Usage: .localstack/venv/bin/python localstack/smoke.py [--records N] [--callers C]
Reads STELE_AWS_ENDPOINT (from localstack/start.sh). Prints timings to stdout.
"""
import argparse, os, sys, threading, time, uuid

import boto3
from botocore.config import Config

ap = argparse.ArgumentParser()
ap.add_argument("--records", type=int, default=500, help="records per PutRecords batch")
ap.add_argument("--batches", type=int, default=1, help="PutRecords batches per caller")
ap.add_argument("--callers", type=int, default=1, help="concurrent PutRecords callers")
args = ap.parse_args()

ep = os.environ["STELE_AWS_ENDPOINT"]
kw = dict(endpoint_url=ep, region_name="us-east-1", aws_access_key_id="test",
          aws_secret_access_key="test", config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
kin, s3, sqs = boto3.client("kinesis", **kw), boto3.client("s3", **kw), boto3.client("sqs", **kw)

t = time.monotonic(); kin.list_streams(); print(f"kinesis first call (ListStreams): {time.monotonic() - t:.3f}s")
name = f"smoke-{uuid.uuid4().hex[:8]}"
t = time.monotonic()
kin.create_stream(StreamName=name, ShardCount=2)
kin.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
print(f"kinesis create_stream until ACTIVE: {time.monotonic() - t:.3f}s")

payload = os.urandom(300).hex().encode()  # 600 B
total = args.records * args.batches * args.callers
errors = []
def put(c):
    cl = boto3.client("kinesis", **kw)
    for b in range(args.batches):
        r = cl.put_records(StreamName=name, Records=[
            {"Data": payload, "PartitionKey": f"{c}-{b}-{i}"} for i in range(args.records)])
        if r.get("FailedRecordCount"):
            errors.append(r["FailedRecordCount"])
t = time.monotonic()
ths = [threading.Thread(target=put, args=(c,)) for c in range(args.callers)]
[th.start() for th in ths]; [th.join() for th in ths]
dt = time.monotonic() - t
print(f"kinesis put_records {total} x 600 B from {args.callers} caller(s): {dt:.3f}s = {total / dt:.0f} rec/s, failed={sum(errors)}")

got = 0
t = time.monotonic()
for sh in kin.list_shards(StreamName=name)["Shards"]:
    it = kin.get_shard_iterator(StreamName=name, ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        r = kin.get_records(ShardIterator=it, Limit=10000)
        got += len(r["Records"])
        if not r["Records"] or r.get("MillisBehindLatest", 0) == 0:
            break
        it = r["NextShardIterator"]
print(f"kinesis get_records: {got} records in {time.monotonic() - t:.3f}s")
assert got == total, (got, total)

bucket = f"stele-smoke-{uuid.uuid4().hex[:8]}"
t = time.monotonic()
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello")
assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"hello"
print(f"s3 create/put/get: {time.monotonic() - t:.3f}s")

t = time.monotonic()
q = sqs.create_queue(QueueName=f"smoke-{uuid.uuid4().hex[:8]}")["QueueUrl"]
sqs.send_message(QueueUrl=q, MessageBody="hi")
m = sqs.receive_message(QueueUrl=q, WaitTimeSeconds=2)["Messages"]
assert m[0]["Body"] == "hi"
print(f"sqs create/send/receive: {time.monotonic() - t:.3f}s (queue url {q})")
print("OK")
