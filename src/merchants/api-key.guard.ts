import { type CanActivate, type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { ApiRequest } from '../http/api-request.js';
import { ProblemError } from '../problems/problem.js';
import { SEND_YOUR_KEY } from './authentication.js';
import { PUBLIC_ROUTE } from './public.decorator.js';

/**
 * Lets through the routes marked @Public(), and the others only for a merchant:
 * Authentication has found who sent the request (or refused a wrong key) before
 * its body was read.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const isPublic = this.reflector.getAllAndOverride<boolean | undefined>(PUBLIC_ROUTE, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (isPublic) return true;
    if (context.switchToHttp().getRequest<ApiRequest>().merchant) return true;
    throw new ProblemError('unauthorized', SEND_YOUR_KEY, {}, { 'WWW-Authenticate': 'Bearer' });
  }
}
