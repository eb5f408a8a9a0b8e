import { type CanActivate, type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { ApiRequest } from '../http/api-request.js';
import { ProblemError } from '../problems/problem.js';
import { MerchantsService } from './merchants.service.js';
import { PUBLIC_ROUTE } from './public.decorator.js';

const BEARER = /^Bearer ([\x21-\x7e]{1,200})$/i;

/** Authenticates every route not marked @Public() with `Authorization: Bearer <api key>`. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly merchants: MerchantsService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const isPublic = this.reflector.getAllAndOverride<boolean | undefined>(PUBLIC_ROUTE, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (isPublic) return true;

    const req = context.switchToHttp().getRequest<ApiRequest>();
    const match = BEARER.exec(req.headers.authorization?.trim() ?? '');
    const merchant = match ? await this.merchants.findByApiKey(match[1]) : null;
    if (!merchant) {
      throw new ProblemError(
        'unauthorized',
        match
          ? 'The API key is not valid.'
          : 'Send your API key as "Authorization: Bearer <api key>".',
        {},
        { 'WWW-Authenticate': 'Bearer' },
      );
    }
    req.merchant = merchant;
    return true;
  }
}
