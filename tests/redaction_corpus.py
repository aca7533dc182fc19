"""The redaction corpus: secrets of many shapes, generated at run time, and harmless texts that look close.

No key shape is written in this file: every secret is random characters in the right shape, made when the
test runs (prefixes are split so no scanner reads a token here). `secrets(rng)` returns (kind, text, secret):
the text a secret would sit in and the part of it that must not survive redaction.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid

__all__ = ["harmless", "secrets"]

LOWER, UPPER, DIGITS = string.ascii_lowercase, string.ascii_uppercase, string.digits
ALNUM = LOWER + UPPER + DIGITS
B64 = ALNUM + "+/"
HEX = "0123456789abcdef"
PASSWORD = ALNUM + "!%^*-_+.~"


def _s(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """n random characters of `alphabet`, with at least one lower, upper and digit when it has them."""
    while True:
        out = "".join(rng.choice(alphabet) for _ in range(n))
        need = [c for c in (LOWER, UPPER, DIGITS) if set(c) & set(alphabet)]
        if n < 8 or all(set(out) & set(c) for c in need):
            return out


def _pem(rng: random.Random, label: str, lines: int, end: bool, escaped: bool = False) -> tuple[str, str]:
    body = [_s(rng, 64, B64) for _ in range(lines)] + [_s(rng, 40, B64) + "=="]
    nl = "\\n" if escaped else "\n"
    text = f"-----BEGIN {label}-----{nl}" + nl.join(body)
    if end:
        text += f"{nl}-----END {label}-----"
    return text, "".join(body)


def secrets(rng: random.Random) -> list[tuple[str, str, str]]:
    """(kind, text containing the secret, the secret) for every shape the redactor must catch."""
    s = lambda n, a=ALNUM: _s(rng, n, a)  # noqa: E731
    akid, asid = "AK" + "IA" + s(16, UPPER + DIGITS), "AS" + "IA" + s(16, UPPER + DIGITS)
    aws_secret, session = s(40, B64), s(356, B64)
    out: list[tuple[str, str, str]] = []

    def add(kind: str, text: str, secret: str) -> None:
        out.append((kind, text, secret))

    # AWS
    add("aws access key in prose", f"my key is {akid}, why is it denied?", akid)
    add("aws temporary key id in STS JSON", json.dumps({"Credentials": {"AccessKeyId": asid}}), asid)
    sts = {"Credentials": {"AccessKeyId": asid, "SecretAccessKey": aws_secret, "SessionToken": session,
                           "Expiration": "2025-01-01T00:00:00Z"}}
    add("aws secret in STS JSON", json.dumps(sts, indent=2), aws_secret)
    add("aws session token in STS JSON", json.dumps(sts), session)
    add("aws secret as a CLI argument", f"aws configure set aws_secret_access_key {aws_secret}", aws_secret)
    add("aws secret as a CLI flag", f"aws sts ... --secret-access-key {aws_secret} --region x", aws_secret)
    add("aws secret in env", f"export AWS_SECRET_ACCESS_KEY={aws_secret}", aws_secret)
    add("aws secret in credentials file", f"[default]\naws_access_key_id = {akid}\naws_secret_access_key = "
                                          f"{aws_secret}\n", aws_secret)
    add("aws session token in env", f"AWS_SESSION_TOKEN={session}\n", session)
    add("aws session token as a CLI argument", f"aws configure set aws_session_token {session}", session)
    add("aws secret in boto3 code", f'boto3.client("s3", aws_secret_access_key="{aws_secret}")', aws_secret)
    # Azure
    account_key = s(86, B64) + "=="
    add("azure storage connection string", f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey="
                                           f"{account_key};EndpointSuffix=core.windows.net", account_key)
    sb_key = s(43, B64) + "="
    add("azure service bus connection string", f"Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName="
                                               f"RootManageSharedAccessKey;SharedAccessKey={sb_key}", sb_key)
    sig = s(40, ALNUM) + "%2B" + s(6) + "%3D"
    add("azure SAS URL", f"https://acme.blob.core.windows.net/c/f.txt?sv=2022-11-02&ss=b&srt=o&sp=r"
                         f"&se=2030-01-01T00:00:00Z&spr=https&sig={sig}", sig)
    ehsig = s(43, ALNUM) + "%3D"
    add("azure SAS token", f"SharedAccessSignature sr=acme.servicebus.windows.net&sig={ehsig}&se=1700000000"
                           "&skn=send", ehsig)
    ad = s(3) + rng.choice(DIGITS) + "Q~" + s(34, ALNUM + "_-.~")
    add("azure AD client secret", f"client secret: {ad}", ad)
    # Slack
    for p in ("b", "p"):
        tok = "xo" + f"x{p}-" + s(12, DIGITS) + "-" + s(12, DIGITS) + "-" + s(24)
        add(f"slack xox{p} token", f"SLACK={tok}" if p == "b" else f"token {tok} stopped working", tok)
    app = "xa" + "pp-1-A" + s(10, UPPER + DIGITS) + "-" + s(13, DIGITS) + "-" + s(64, HEX)
    add("slack app token", f"socket mode with {app}", app)
    hook = "T" + s(8, UPPER + DIGITS) + "/B" + s(8, UPPER + DIGITS) + "/" + s(24)
    add("slack webhook", f"curl -X POST https://hooks.slack.com/services/{hook} -d '{{}}'", hook)
    # Stripe
    for prefix in ("sk" + "_live_", "sk" + "_test_", "rk" + "_live_"):
        key = prefix + s(24)
        add(f"stripe {prefix}", f"stripe.api_key = '{key}'" if prefix.startswith("rk") else f"charge with {key}", key)
    whsec = "wh" + "sec_" + s(32)
    add("stripe webhook secret", f"endpoint secret {whsec}", whsec)
    # Authorization
    basic = base64.b64encode(f"admin:{s(14, PASSWORD)}".encode()).decode()
    add("authorization basic", f"GET / HTTP/1.1\nAuthorization: Basic {basic}\nHost: x", basic)
    opaque = s(40, ALNUM + "-_")
    add("authorization bearer", f"Authorization: Bearer {opaque}", opaque)
    add("bearer in curl", f'curl -H "Authorization: Bearer {opaque}" https://api.example.org', opaque)
    drf = s(40, HEX)
    add("authorization token scheme", f"Authorization: Token {drf}", drf)
    add("bearer alone", f"I passed bearer {opaque} and got 401", opaque)
    curl_pw = s(16, PASSWORD)
    add("curl -u", f"curl -u admin:{curl_pw} https://ci.internal/api", curl_pw)
    api_header = s(32)
    add("x-api-key header", f"x-api-key: {api_header}", api_header)
    # PEM blocks
    for label, end, escaped in (("RSA PRIVATE KEY", True, False), ("OPENSSH PRIVATE KEY", True, False),
                                ("EC PRIVATE KEY", False, False), ("PRIVATE KEY", True, True),
                                ("PGP PRIVATE KEY BLOCK", True, False), ("ENCRYPTED PRIVATE KEY", False, False)):
        pem, body = _pem(rng, label, 6, end, escaped)
        text = json.dumps({"type": "service_account", "private_key": pem.replace("\\n", "\n")}) if escaped else pem
        add(f"PEM {label}{'' if end else ' without END'}{' in JSON' if escaped else ''}",
            f"the key:\n{text}\nthanks" if not escaped else text, body)
    # URLs with passwords
    for scheme, user in (("postgresql", "app"), ("mysql", "root"), ("mongodb+srv", "svc"), ("redis", ""),
                         ("rediss", "default"), ("https", "deploy"), ("amqp", "guest1")):
        pw = s(18, ALNUM + "-_.~")
        add(f"{scheme} URL password", f"DATABASE={scheme}://{user}:{pw}@db.internal:5432/app", pw)
    multi_pw = s(16)
    add("multi-host URL password", f"postgresql://u:{multi_pw}@h1:5432,h2:5433/db", multi_pw)
    q_pw = s(16)
    add("password in a query string", f"jdbc:postgresql://db/app?user=app&password={q_pw}&ssl=true", q_pw)
    q_tok = s(32)
    add("access token in a query string", f"https://api.example.org/v1/me?access_token={q_tok}", q_tok)
    dsn_pw = s(16, PASSWORD)
    add("key=value DSN password", f"host=db port=5432 user=app password={dsn_pw} dbname=app", dsn_pw)
    ado_pw = s(16, PASSWORD)
    add("ADO.NET connection string", f"Server=tcp:x.database.windows.net,1433;User ID=app;Password={ado_pw};", ado_pw)
    # .env and config files
    for line in ("PASSWORD={}", "SECRET_KEY={}", 'DB_PASSWORD="{}"', "export API_TOKEN={}", "CLIENT_SECRET={}",
                 "DJANGO_SECRET_KEY={}", "ENV REDIS_PASSWORD={}"):
        value = s(20, PASSWORD)
        add(f".env {line.split('=')[0]}", "DEBUG=false\n" + line.format(value) + "\nPORT=8000\n", value)
    yaml_pw = s(14, PASSWORD)
    add("YAML password", f"database:\n  user: app\n  password: {yaml_pw}\n", yaml_pw)
    json_pw = s(14, PASSWORD)
    add("JSON password", json.dumps({"user": "app", "password": json_pw}), json_pw)
    py_key = s(32)
    add("python api_key assignment", f'api_key = "{py_key}"', py_key)
    npmrc = str(uuid.UUID(int=rng.getrandbits(128)))
    add(".npmrc auth token", f"//registry.npmjs.org/:_authToken={npmrc}", npmrc)
    docker = base64.b64encode(f"bot:{s(20)}".encode()).decode()
    add("docker config auth", json.dumps({"auths": {"ghcr.io": {"auth": docker}}}), docker)
    xml_pw = s(14, PASSWORD)
    add("XML password", f"<datasource><user>app</user><password>{xml_pw}</password></datasource>", xml_pw)
    # Provider tokens
    hf = "hf" + "_" + s(34, LOWER + UPPER)
    add("huggingface token", f"login with {hf}", hf)
    gl = "gl" + "pat-" + s(20, ALNUM + "_-")
    add("gitlab token", f"git clone https://oauth2:{gl}@gitlab.com/g/p.git", gl)
    npm = "np" + "m_" + s(36)
    add("npm token", f"npm token is {npm}", npm)
    sg = "S" + "G." + s(22, ALNUM + "_-") + "." + s(43, ALNUM + "_-")
    add("sendgrid key", f"sendgrid: {sg}", sg)
    for prefix in ("gh" + "p_", "gh" + "o_", "gh" + "s_"):
        tok = prefix + s(36)
        add(f"github {prefix}", f"token {tok} leaked", tok)
    pat = "github" + "_pat_" + s(22) + "_" + s(59)
    add("github fine-grained token", f"use {pat}", pat)
    proj = "sk" + "-proj-" + s(74, ALNUM + "_-") + s(4)
    add("openai project key", f"openai.api_key = '{proj}'", proj)
    legacy = "sk" + "-" + s(20) + "T3Blbk" + "FJ" + s(20)
    add("openai legacy key", f"key {legacy} is over quota", legacy)
    ant = "sk" + "-ant-api03-" + s(93, ALNUM + "_-") + "AA"
    add("anthropic key", f"x-api-key {ant}", ant)
    goog = "AI" + "za" + s(35, ALNUM + "_-")
    add("google api key", f"https://maps.googleapis.com/maps/api/js?key={goog}", goog)
    ya29 = "ya" + "29." + s(120, ALNUM + "_-")
    add("google oauth access token", f"access: {ya29}", ya29)
    gocspx = "GOC" + "SPX-" + s(28, ALNUM + "_-")
    add("google oauth client secret", json.dumps({"installed": {"client_secret": gocspx}}), gocspx)
    header, payload = (base64.urlsafe_b64encode(json.dumps(x).encode()).decode().rstrip("=")
                       for x in ({"alg": "HS256", "typ": "JWT"}, {"sub": s(12), "exp": 1900000000}))
    jwt = f"{header}.{payload}.{s(43, ALNUM + '_-')}"
    add("JWT", f"cookie session={jwt}; Path=/", jwt)
    twilio = "S" + "K" + s(32, HEX)
    add("twilio api key", f"twilio key {twilio}", twilio)
    mailgun = "ke" + "y-" + s(32, HEX)
    add("mailgun key", f"mailgun {mailgun}", mailgun)
    discord = s(18, DIGITS) + "/" + s(68, ALNUM + "_-")
    add("discord webhook", f"https://discord.com/api/webhooks/{discord}", discord)
    shop = "shp" + "at_" + s(32, HEX)
    add("shopify token", f"shopify {shop}", shop)
    do = "do" + "p_v1_" + s(64, HEX)
    add("digitalocean token", f"doctl auth init -t {do}", do)
    pypi = "py" + "pi-AgEIcHlwaS5vcmc" + s(70, ALNUM + "_-")
    add("pypi token", f"twine upload -p {pypi} dist/*", pypi)
    dapi = "da" + "pi" + s(32, HEX)
    add("databricks token", f"databricks {dapi}", dapi)
    gsk = "gs" + "k_" + s(52)
    add("groq key", f"groq {gsk}", gsk)
    tg = s(10, DIGITS) + ":" + "AA" + s(33, ALNUM + "_-")
    add("telegram bot token", f"bot token {tg}", tg)
    hvs = "hv" + "s." + s(90, ALNUM + "_-")
    add("vault token", f"vault login {hvs}", hvs)
    age = "AGE-SECRET" + "-KEY-1" + s(58, UPPER + DIGITS)
    add("age secret key", f"# created\n{age}\n", age)
    return out


_CODE = '''
def lookup(user_id: int, cache: dict[str, str]) -> str:
    key = f"user:{user_id}"
    token_count = len(key) // 4
    password = input("password: ")
    skip_list = ["sk-", "AKIA"]
    return cache.get(key, "") + str(token_count)
'''

_SETTINGS = '''
class Settings(BaseSettings):
    database_url: SecretStr | None = Field(None, alias="DATABASE_URL")
    api_key: SecretStr | None = None
    password: str = ""
    token: Optional[str] = None
    SECRET_KEY = os.environ["SECRET_KEY"]
    MAX_TOKENS = 4096
    PASSWORD_MIN_LENGTH = 12
'''

_JS = '''
const apiKey = process.env.OPENAI_API_KEY;
const headers = { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" };
fetch(url, { headers }).then((r) => r.json());
'''

_CSS = '''
.sk-spinner-fading-circle .sk-circle1 { transform: rotate(30deg); }
.sk-folding-cube-wrapper-with-shadow-animation-delay { animation-delay: 0.3s; }
.sk-spinner-wave-rect-animation-stretch-delay-long { width: 6px; }
'''


def harmless(rng: random.Random) -> list[tuple[str, str]]:
    """(what it is, text) that must come out of redaction unchanged."""
    sha = "".join(rng.choice(HEX) for _ in range(40))
    sha256 = "".join(rng.choice(HEX) for _ in range(64))
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + rng.randbytes(3000)).decode()
    sri = base64.b64encode(rng.randbytes(64)).decode()
    uid = str(uuid.UUID(int=rng.getrandbits(128)))
    return [
        ("python code", _CODE),
        ("settings class", _SETTINGS),
        ("javascript", _JS),
        ("css spinner classes", _CSS),
        ("uuid", f"request {uid} took 12 ms"),
        ("uuids in json", json.dumps({"id": uid, "parent_id": str(uuid.UUID(int=rng.getrandbits(128)))})),
        ("git sha", f"commit {sha}\nAuthor: Ann <ann@example.org>\n\n    Fix the cache"),
        ("git log line", f"{sha[:12]} Merge branch 'main' into token-refresh"),
        ("sha256", f"sha256:{sha256}  agentstream-0.1.0.tar.gz"),
        ("docker digest", f"image: python@sha256:{sha256}"),
        ("base64 image", f'<img src="data:image/png;base64,{png}" alt="chart">'),
        ("subresource integrity", f'"integrity": "sha512-{sri}"'),
        ("placeholder env", "OPENAI_API_KEY=YOUR_API_KEY_HERE\nANTHROPIC_API_KEY=your-key-here\n"),
        ("placeholder code", 'client = OpenAI(api_key="YOUR_API_KEY_HERE")'),
        ("placeholder env reference", "DB_PASSWORD=${DB_PASSWORD}\nREDIS_PASSWORD=$REDIS_PASSWORD\n"),
        ("placeholder bearer", "curl -H 'Authorization: Bearer <token>' https://api.example.org"),
        ("placeholder bearer variable", 'curl -H "Authorization: Bearer $TOKEN" https://api.example.org'),
        ("placeholder xxx key", "export OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        ("placeholder url", "postgresql://user:password@localhost:5432/mydb"),
        ("placeholder url template", "redis://:${REDIS_PASSWORD}@cache:6379/0"),
        ("aws documentation example", "aws_access_key_id = AK" + "IAIOSFODNN7EXAMPLE\naws_secret_access_key = "
                                      "wJalrXUtnFEMI/" + "K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("prose bearer", "The bearer of this letter is a friend; bearer authentication sends a token."),
        ("prose token", "The token limit is 4096 tokens, so long prompts are cut."),
        ("prose password", "Password: must be at least 12 characters and contain a digit."),
        ("prose secret", "The secret to good caching is knowing what to forget."),
        ("prose authorization", "Authorization: required for every admin endpoint."),
        ("masked url", "postgresql://app:***@db.internal:5432/app"),
        ("url without password", "https://user@example.com/path?page=2&sort=desc"),
        ("local dsn", "postgresql://postgres@127.0.0.1:15432/postgres"),
        ("redis url", "redis://127.0.0.1:6379/0"),
        ("ssh remote", "git@github.com:acme/shop.git and ssh://git@github.com:22/acme/shop.git"),
        ("oauth response", '{"token_type": "bearer", "expires_in": 3600, "scope": "read"}'),
        ("kubernetes secret ref", "env:\n- name: DB_PASSWORD\n  valueFrom:\n    secretKeyRef:\n"
                                  "      name: db\n      key: password\n"),
        ("github actions", "env:\n  GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n"),
        ("shell", "export PATH=$HOME/.local/bin:$PATH\ngit push -u origin main\nls -la /tmp\n"),
        ("dockerfile", "FROM python:3.11-slim\nENV PYTHONUNBUFFERED=1\nRUN pip install -e .\n"),
        ("sql", "SELECT task_id, output FROM memory_tasks WHERE tenant = %s AND token_count > 10;"),
        ("diff", f"diff --git a/x.py b/x.py\nindex {sha[:7]}..{sha[7:14]} 100644\n--- a/x.py\n+++ b/x.py\n"
                 "@@ -1,2 +1,2 @@\n-MAX_TOKENS = 1024\n+MAX_TOKENS = 2048\n"),
        ("html form", '<input type="password" name="password" autocomplete="current-password">'),
        ("log line", "2025-01-01T00:00:00Z INFO task done task_id=t-12 status=ok latency_ms=41.2"),
        ("kafka topics", "agent.tasks agent.tasks.by-tenant agent.results agent.deadletters"),
        ("python kwargs", "conn = connect(host=host, password=password, token=self.token)"),
        ("go struct", "cfg := Config{Password: os.Getenv(\"PASSWORD\"), Token: opts.Token}"),
        ("yaml config", "redis:\n  host: cache\n  port: 6379\n  password: null\ntoken_ttl: 3600\n"),
        ("long word", "Antidisestablishmentarianism and pneumonoultramicroscopicsilicovolcanoconiosis"),
        ("numbers", "order 4242424242424242 shipped; zip 94103; phone +1 415 555 0100"),
        ("markdown", "## Auth\nUse a **bearer token** in the `Authorization` header. Rotate the secret key yearly."),
        ("cargo lock", f'[[package]]\nname = "serde"\nchecksum = "{sha256}"\n'),
        ("typescript types", "interface Login { username: string; password: string; remember?: boolean }"),
        ("redaction marker", "OPENAI_API_KEY=[REDACTED:openai_key] and url postgres://u:[REDACTED:url_password]@h/db"),
        ("json ids", json.dumps({"id": "chatcmpl-" + sha[:24], "object": "chat.completion", "created": 1700000000})),
        ("css variable", ":root { --sk-primary: #3366ff; --token-gap: 4px; }"),
    ]
