"""AWS backends (boto3): `ec2` instances, `sagemaker` real-time endpoints and `lambda` functions.

Credentials, region and endpoint come from the standard boto3 chain (AWS_* variables, profiles,
AWS_ENDPOINT_URL), each overridable per node with the properties `region`, `endpoint_url` and
`profile`, so one descriptor runs against AWS, an AWS-compatible private cloud or an emulator.
"""
