"""Authentication and authorization as etcd 3.4 does them.

Users have bcrypt-hashed passwords and roles; roles have key-range permissions (READ,
WRITE, READWRITE over [key, range_end), etcd's range_end conventions). Once enabled,
every RPC is checked: the caller is named by a simple token (from Authenticate, sent in
the `token` metadata) or, with --client-cert-auth, by its TLS certificate's CN. The
`root` user/role may do everything; enabling auth needs a root user holding the root
role. The auth state lives in <data-dir>/auth.json (replaced atomically), beside the
store, so it is not part of the key space clients see.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
from typing import Optional

from . import rpcerrors
from .proto import auth_pb2

ROOT = "root"
AUTH_FILE = "auth.json"
TOKEN_TTL = 300.0            # etcd's simple-token TTL (seconds), renewed on use
READ, WRITE, READWRITE = (auth_pb2.Permission.READ, auth_pb2.Permission.WRITE,
                          auth_pb2.Permission.READWRITE)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s)


def _covers(perms: list, key: bytes, end: Optional[bytes]) -> bool:
    """True if the union of permission ranges covers [key, end) (end None: the key
    alone; b"\\0": every key >= key). O(p log p) for p permissions."""
    spans = []
    for pkey, pend in perms:
        if not pend:
            spans.append((pkey, pkey + b"\x00"))        # a single key as [k, k\0)
        else:
            spans.append((pkey, None if pend == b"\x00" else pend))
    want_end = key + b"\x00" if end is None else (None if end == b"\x00" else end)
    pos = key
    for s, e in sorted(spans, key=lambda x: x[0]):
        if s > pos:
            break
        if e is None:
            return True
        if e > pos:
            pos = e
        if want_end is not None and pos >= want_end:
            return True
    return want_end is not None and pos >= want_end


class AuthStore:
    """Users, roles, tokens and the permission checks. Thread-safe."""

    def __init__(self, data_dir: Optional[str], bcrypt_cost: int = 10,
                 client_cert_auth: bool = False):
        self._path = os.path.join(data_dir, AUTH_FILE) if data_dir else None
        self._cost = bcrypt_cost
        self._cert_auth = client_cert_auth
        self._lock = threading.RLock()
        self.enabled = False
        self.revision = 1
        self.users: dict = {}      # name -> {"password": str|None, "roles": [..]}
        self.roles: dict = {}      # name -> [[permType, key_b64, end_b64], ...]
        self._tokens: dict = {}    # token -> (user, expiry, auth revision)
        self._load()

    # ---- persistence
    def _load(self) -> None:
        if not self._path or not os.path.exists(self._path):
            return
        with open(self._path) as f:
            saved = json.load(f)
        self.enabled = bool(saved.get("enabled"))
        self.revision = int(saved.get("revision", 1))
        self.users = saved.get("users", {})
        self.roles = saved.get("roles", {})

    def _save(self) -> None:
        """Caller holds the lock. Bumps the auth revision (invalidates no tokens:
        etcd checks permissions at use, so changed roles apply at once)."""
        self.revision += 1
        if not self._path:
            return
        tmp = self._path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"enabled": self.enabled, "revision": self.revision,
                       "users": self.users, "roles": self.roles}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    # ---- who is calling
    def caller(self, context) -> Optional[str]:
        """The authenticated user of this RPC, None with auth disabled. Raises etcd's
        errors for a bad token, or a missing one (user name is empty)."""
        if not self.enabled:
            return None
        token = None
        for k, v in context.invocation_metadata() or ():
            if k in ("token", "authorization"):
                token = v
        if token:
            return self._user_of(token)
        if self._cert_auth:
            cn = context.auth_context().get("x509_common_name")
            if cn:
                name = cn[0].decode()
                if name in self.users:
                    return name
        raise rpcerrors.USER_EMPTY

    def _user_of(self, token: str) -> str:
        with self._lock:
            entry = self._tokens.get(token)
            now = time.monotonic()
            if entry is None or entry[1] < now or entry[0] not in self.users:
                self._tokens.pop(token, None)
                raise rpcerrors.INVALID_AUTH_TOKEN
            self._tokens[token] = (entry[0], now + TOKEN_TTL, entry[2])
            return entry[0]

    def _is_root(self, user: str) -> bool:
        return ROOT in self.users.get(user, {}).get("roles", ())

    # ---- checks used by the services
    def check_range(self, context, key: bytes, end: Optional[bytes], kind: str) -> None:
        """Raise PERMISSION_DENIED unless the caller may `kind` ("read"/"write") the
        range. O(permissions of the caller's roles)."""
        user = self.caller(context)
        if user is None or self._is_root(user):
            return
        wanted = (READ, READWRITE) if kind == "read" else (WRITE, READWRITE)
        with self._lock:
            perms = [(_unb64(k), _unb64(e)) for role in self.users[user].get("roles", ())
                     for t, k, e in self.roles.get(role, ()) if t in wanted]
        if not _covers(perms, key, end):
            raise rpcerrors.PERMISSION_DENIED

    def check_admin(self, context) -> None:
        user = self.caller(context)
        if user is not None and not self._is_root(user):
            raise rpcerrors.PERMISSION_DENIED

    def check_authenticated(self, context) -> None:
        self.caller(context)

    # ---- Auth service operations
    def authenticate(self, name: str, password: str) -> str:
        import bcrypt
        if not self.enabled:
            raise rpcerrors.AUTH_NOT_ENABLED
        with self._lock:
            user = self.users.get(name)
        hashed = user.get("password") if user else None
        if not hashed or not bcrypt.checkpw(password.encode(), hashed.encode()):
            raise rpcerrors.AUTH_FAILED
        token = "%s.%d" % (secrets.token_urlsafe(12), self.revision)
        with self._lock:
            self._tokens[token] = (name, time.monotonic() + TOKEN_TTL, self.revision)
        return token

    def enable(self) -> None:
        with self._lock:
            if self.enabled:
                return
            if ROOT not in self.users:
                raise rpcerrors.ROOT_USER_NOT_EXIST
            if not self._is_root(ROOT):
                raise rpcerrors.ROOT_ROLE_NOT_EXIST
            self.enabled = True
            self._save()

    def disable(self) -> None:
        with self._lock:
            self.enabled = False
            self._tokens.clear()
            self._save()

    def user_add(self, name: str, password: str, no_password: bool) -> None:
        import bcrypt
        if not name:
            raise rpcerrors.USER_EMPTY
        hashed = None
        if not no_password:
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._cost)).decode()
        with self._lock:
            if name in self.users:
                raise rpcerrors.USER_ALREADY_EXIST
            self.users[name] = {"password": hashed, "roles": []}
            self._save()

    def user_get(self, name: str) -> list:
        with self._lock:
            if name not in self.users:
                raise rpcerrors.USER_NOT_FOUND
            return sorted(self.users[name]["roles"])

    def user_list(self) -> list:
        with self._lock:
            return sorted(self.users)

    def user_delete(self, name: str) -> None:
        with self._lock:
            if self.enabled and name == ROOT:
                raise rpcerrors.INVALID_AUTH_MGMT
            if name not in self.users:
                raise rpcerrors.USER_NOT_FOUND
            del self.users[name]
            self._drop_tokens(name)
            self._save()

    def user_change_password(self, name: str, password: str) -> None:
        import bcrypt
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(self._cost)).decode()
        with self._lock:
            if name not in self.users:
                raise rpcerrors.USER_NOT_FOUND
            self.users[name]["password"] = hashed
            self._drop_tokens(name)
            self._save()

    def user_grant_role(self, user: str, role: str) -> None:
        with self._lock:
            if user not in self.users:
                raise rpcerrors.USER_NOT_FOUND
            if role != ROOT and role not in self.roles:
                raise rpcerrors.ROLE_NOT_FOUND
            roles = self.users[user]["roles"]
            if role not in roles:
                roles.append(role)
                roles.sort()
            self._save()

    def user_revoke_role(self, user: str, role: str) -> None:
        with self._lock:
            if self.enabled and user == ROOT and role == ROOT:
                raise rpcerrors.INVALID_AUTH_MGMT
            if user not in self.users:
                raise rpcerrors.USER_NOT_FOUND
            if role not in self.users[user]["roles"]:
                raise rpcerrors.ROLE_NOT_GRANTED
            self.users[user]["roles"].remove(role)
            self._save()

    def role_add(self, name: str) -> None:
        if not name:
            raise rpcerrors.ROLE_EMPTY
        with self._lock:
            if name in self.roles:
                raise rpcerrors.ROLE_ALREADY_EXIST
            self.roles[name] = []
            self._save()

    def role_get(self, name: str) -> list:
        """[(permType, key, range_end)] of a role (root: everything)."""
        with self._lock:
            if name not in self.roles:
                raise rpcerrors.ROLE_NOT_FOUND
            return [(t, _unb64(k), _unb64(e)) for t, k, e in self.roles[name]]

    def role_list(self) -> list:
        with self._lock:
            return sorted(self.roles)

    def role_delete(self, name: str) -> None:
        with self._lock:
            if self.enabled and name == ROOT:
                raise rpcerrors.INVALID_AUTH_MGMT
            if name not in self.roles:
                raise rpcerrors.ROLE_NOT_FOUND
            del self.roles[name]
            for u in self.users.values():
                if name in u["roles"]:
                    u["roles"].remove(name)
            self._save()

    def role_grant(self, name: str, perm_type: int, key: bytes, end: bytes) -> None:
        with self._lock:
            if name not in self.roles:
                raise rpcerrors.ROLE_NOT_FOUND
            perms = [p for p in self.roles[name]
                     if not (p[1] == _b64(key) and p[2] == _b64(end))]
            perms.append([int(perm_type), _b64(key), _b64(end)])
            perms.sort(key=lambda p: (_unb64(p[1]), _unb64(p[2])))
            self.roles[name] = perms
            self._save()

    def role_revoke(self, name: str, key: bytes, end: bytes) -> None:
        with self._lock:
            if name not in self.roles:
                raise rpcerrors.ROLE_NOT_FOUND
            perms = self.roles[name]
            keep = [p for p in perms if not (p[1] == _b64(key) and p[2] == _b64(end))]
            if len(keep) == len(perms):
                raise rpcerrors.PERMISSION_NOT_GRANTED
            self.roles[name] = keep
            self._save()

    def _drop_tokens(self, user: str) -> None:
        for t in [t for t, e in self._tokens.items() if e[0] == user]:
            del self._tokens[t]
