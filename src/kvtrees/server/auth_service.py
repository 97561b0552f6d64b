"""etcd's Auth service: enable/disable, Authenticate, users and roles (AuthStore does
the work; this maps messages and checks that the caller is root once auth is on)."""
from __future__ import annotations

from .member import Member, handler
from .proto import auth_pb2, rpc_pb2, rpc_pb2_grpc


class AuthService(rpc_pb2_grpc.AuthServicer):
    def __init__(self, member: Member):
        self.member = member
        self.auth = member.auth

    def _admin(self, context) -> None:
        self.auth.check_admin(context)

    def _self_or_admin(self, context, name: str) -> None:
        user = self.auth.caller(context)
        if user is not None and user != name:
            self.auth.check_admin(context)

    @handler
    def AuthEnable(self, req, context):
        self._admin(context)
        self.auth.enable()
        return rpc_pb2.AuthEnableResponse(header=self.member.header())

    @handler
    def AuthDisable(self, req, context):
        self._admin(context)
        self.auth.disable()
        return rpc_pb2.AuthDisableResponse(header=self.member.header())

    @handler
    def Authenticate(self, req, context):
        token = self.auth.authenticate(req.name, req.password)
        return rpc_pb2.AuthenticateResponse(header=self.member.header(), token=token)

    @handler
    def UserAdd(self, req, context):
        self._admin(context)
        self.auth.user_add(req.name, req.password, req.options.no_password)
        return rpc_pb2.AuthUserAddResponse(header=self.member.header())

    @handler
    def UserGet(self, req, context):
        self._self_or_admin(context, req.name)
        return rpc_pb2.AuthUserGetResponse(header=self.member.header(),
                                           roles=self.auth.user_get(req.name))

    @handler
    def UserList(self, req, context):
        self._admin(context)
        return rpc_pb2.AuthUserListResponse(header=self.member.header(),
                                            users=self.auth.user_list())

    @handler
    def UserDelete(self, req, context):
        self._admin(context)
        self.auth.user_delete(req.name)
        return rpc_pb2.AuthUserDeleteResponse(header=self.member.header())

    @handler
    def UserChangePassword(self, req, context):
        self._self_or_admin(context, req.name)
        self.auth.user_change_password(req.name, req.password)
        return rpc_pb2.AuthUserChangePasswordResponse(header=self.member.header())

    @handler
    def UserGrantRole(self, req, context):
        self._admin(context)
        self.auth.user_grant_role(req.user, req.role)
        return rpc_pb2.AuthUserGrantRoleResponse(header=self.member.header())

    @handler
    def UserRevokeRole(self, req, context):
        self._admin(context)
        self.auth.user_revoke_role(req.name, req.role)
        return rpc_pb2.AuthUserRevokeRoleResponse(header=self.member.header())

    @handler
    def RoleAdd(self, req, context):
        self._admin(context)
        self.auth.role_add(req.name)
        return rpc_pb2.AuthRoleAddResponse(header=self.member.header())

    @handler
    def RoleGet(self, req, context):
        self._admin(context)
        perms = [auth_pb2.Permission(permType=t, key=k, range_end=e)
                 for t, k, e in self.auth.role_get(req.role)]
        return rpc_pb2.AuthRoleGetResponse(header=self.member.header(), perm=perms)

    @handler
    def RoleList(self, req, context):
        self._admin(context)
        return rpc_pb2.AuthRoleListResponse(header=self.member.header(),
                                            roles=self.auth.role_list())

    @handler
    def RoleDelete(self, req, context):
        self._admin(context)
        self.auth.role_delete(req.role)
        return rpc_pb2.AuthRoleDeleteResponse(header=self.member.header())

    @handler
    def RoleGrantPermission(self, req, context):
        self._admin(context)
        self.auth.role_grant(req.name, req.perm.permType, req.perm.key, req.perm.range_end)
        return rpc_pb2.AuthRoleGrantPermissionResponse(header=self.member.header())

    @handler
    def RoleRevokePermission(self, req, context):
        self._admin(context)
        self.auth.role_revoke(req.role, req.key, req.range_end)
        return rpc_pb2.AuthRoleRevokePermissionResponse(header=self.member.header())
