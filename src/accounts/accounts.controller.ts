import {
  Body,
  Controller,
  Delete,
  Get,
  Headers,
  HttpCode,
  Param,
  Post,
  Put,
  Query,
  Res,
} from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { parseEntityTags, versionsFrom } from '../http/conditional.js';
import { Idempotent } from '../idempotency/idempotent.decorator.js';
import { MerchantId } from '../merchants/current-merchant.decorator.js';
import { type AccountView, etagOf, toAccountView } from './account.js';
import { AccountsService } from './accounts.service.js';
import { CreateAccountDto } from './dto/create-account.dto.js';
import { ListAccountsQuery } from './dto/list-accounts.query.js';
import { ReplaceAccountDto } from './dto/replace-account.dto.js';

/**
 * POST creates (safe to retry with an Idempotency-Key); GET, PUT and DELETE are
 * idempotent by their nature and need none: they read, set, or close, and doing
 * that twice leaves the account as doing it once. Their ETag and If-Match make
 * them safe under concurrency too (a compare-and-set).
 */
@Controller('accounts')
export class AccountsController {
  constructor(private readonly accounts: AccountsService) {}

  @Post()
  @Idempotent({ required: false, location: (account) => `/accounts/${account.id}` })
  async create(
    @MerchantId() merchantId: string,
    @Body() dto: CreateAccountDto,
  ): Promise<AccountView> {
    return toAccountView(await this.accounts.create(merchantId, dto));
  }

  @Get()
  list(@MerchantId() merchantId: string, @Query() query: ListAccountsQuery) {
    return this.accounts.list(merchantId, query);
  }

  /** With its ETag; If-None-Match naming it gets 304 (installConditionalGet). */
  @Get(':id')
  async get(
    @MerchantId() merchantId: string,
    @Param('id') id: string,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<AccountView> {
    const account = await this.accounts.get(merchantId, id);
    reply.header('ETag', etagOf(account));
    return toAccountView(account);
  }

  @Put(':id')
  async replace(
    @MerchantId() merchantId: string,
    @Param('id') id: string,
    @Body() dto: ReplaceAccountDto,
    @Headers('if-match') ifMatch: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<AccountView> {
    const expected = versionsFrom(parseEntityTags(ifMatch, 'If-Match'));
    const account = await this.accounts.replace(merchantId, id, dto, expected);
    reply.header('ETag', etagOf(account));
    return toAccountView(account);
  }

  @Delete(':id')
  @HttpCode(204)
  async close(
    @MerchantId() merchantId: string,
    @Param('id') id: string,
    @Headers('if-match') ifMatch: string | undefined,
  ): Promise<void> {
    await this.accounts.close(merchantId, id, versionsFrom(parseEntityTags(ifMatch, 'If-Match')));
  }
}
