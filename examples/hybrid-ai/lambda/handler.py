"""Serverless inference entry point: a tiny rule-based iris classifier (no dependencies to package)."""

import json


def handler(event, context):
    body = event.get("body") if isinstance(event, dict) else None
    data = json.loads(body) if isinstance(body, str) else (event or {})
    rows = data.get("instances", [])
    # petal length separates setosa; petal width the other two (good enough for a demo function)
    labels = [0 if row[2] < 2.5 else (1 if row[3] < 1.75 else 2) for row in rows]
    return {"statusCode": 200, "body": json.dumps({"predictions": labels})}
