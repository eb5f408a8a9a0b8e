import { Injectable } from '@nestjs/common';
import { newId } from '../common/ids.js';
import { type List, pageAfter, pageParams, toList } from '../common/list.js';
import { TransactionHost } from '../database/transaction-host.js';
import { EventsService } from '../events/events.service.js';
import { CommittedProblem, NotFoundError, ProblemError } from '../problems/problem.js';
import { type Account, ACCOUNT_COLUMNS, type AccountView, toAccountView } from './account.js';
import type { CreateAccountDto } from './dto/create-account.dto.js';
import type { ListAccountsQuery } from './dto/list-accounts.query.js';
import type { ReplaceAccountDto } from './dto/replace-account.dto.js';

/**
 * Accounts: opens, reads, replaces and closes them. The balance is not changed
 * here: it moves only with a ledger entry, through LedgerService.post().
 */
@Injectable()
export class AccountsService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly events: EventsService,
  ) {}

  /** Opens an account with a zero balance, in the request's transaction. */
  async create(merchantId: string, dto: CreateAccountDto): Promise<Account> {
    const [row] = await this.tx.query<Account>(
      `INSERT INTO accounts (merchant_id, id, name, currency, metadata) VALUES ($1, $2, $3, $4, $5)
       RETURNING ${ACCOUNT_COLUMNS}`,
      [merchantId, newId('account'), dto.name, dto.currency, JSON.stringify(dto.metadata ?? {})],
    );
    this.events.recordAtCommit(merchantId, 'account.created', toAccountView(row));
    return row;
  }

  /** The merchant's account, or a 404 (NotFoundError, also for another merchant's id). */
  async get(merchantId: string, id: string): Promise<Account> {
    const [row] = await this.tx.query<Account>(
      `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE merchant_id = $1 AND id = $2`,
      [merchantId, id],
    );
    if (!row) throw new NotFoundError('account', id);
    return row;
  }

  /**
   * The merchant's account, checked to be open and to hold `currency`: 404, 409
   * (AccountClosed) or 422 (CurrencyMismatchError) otherwise. How a movement that
   * did not post finds out why, when the reason is not the balance.
   */
  async getMovable(merchantId: string, id: string, currency: string): Promise<Account> {
    const account = await this.get(merchantId, id);
    if (account.closedAt) throw new AccountClosed(account);
    if (account.currency !== currency) throw new CurrencyMismatchError(currency, account);
    return account;
  }

  /** Open accounts, newest first; closed ones too with `includeClosed`. */
  async list(merchantId: string, query: ListAccountsQuery): Promise<List<AccountView>> {
    const rows = await this.tx.query<Account>(
      `SELECT ${ACCOUNT_COLUMNS} FROM accounts
        WHERE merchant_id = $1 AND ($2 OR closed_at IS NULL) ${pageAfter(3)}`,
      [merchantId, query.includeClosed, ...pageParams(query)],
    );
    return toList(rows, query, toAccountView);
  }

  /**
   * PUT: sets the account's name and metadata. Safe to repeat without a key,
   * because it sets rather than adds: the same PUT twice leaves the same state.
   *
   * One conditional UPDATE. It applies only to an open account and, when the
   * client sent If-Match, only if the account is still at a version it names
   * (`expected`): a compare-and-set, so of two clients that read version 3 and
   * both write, one wins and the other learns it lost (412) instead of silently
   * overwriting. A PUT that changes nothing leaves the version (the ETag) and
   * updatedAt as they are, and tells nobody (an account.updated event only for a change).
   */
  replace(
    merchantId: string,
    id: string,
    dto: ReplaceAccountDto,
    expected: number[] | null,
  ): Promise<Account> {
    return this.tx.run(() => this.replaceInTransaction(merchantId, id, dto, expected));
  }

  private async replaceInTransaction(
    merchantId: string,
    id: string,
    dto: ReplaceAccountDto,
    expected: number[] | null,
  ): Promise<Account> {
    const fields = { name: dto.name, metadata: dto.metadata ?? {} };
    // Written only when something changes: a PUT of what is already there is
    // answered below, from the account as it is, with no new version.
    const [updated] = await this.tx.query<Account>(
      `UPDATE accounts
          SET name = $3, metadata = $4, version = version + 1, updated_at = now()
        WHERE merchant_id = $1 AND id = $2 AND closed_at IS NULL
          AND ($5::bigint[] IS NULL OR version = ANY ($5::bigint[]))
          AND (name, metadata) IS DISTINCT FROM ($3, $4::jsonb)
       RETURNING ${ACCOUNT_COLUMNS}`,
      [merchantId, id, fields.name, JSON.stringify(fields.metadata), expected],
    );
    if (updated) {
      this.events.recordAtCommit(merchantId, 'account.updated', toAccountView(updated));
      return updated;
    }

    // Nothing written: say why, from the account as it is now.
    const account = await this.get(merchantId, id);
    // Already so: a retry of a PUT that went through (its response was lost) is
    // answered as a success, even though its If-Match is stale now (RFC 9110 §13.1).
    if (hasFields(account, fields)) return account;
    if (expected && !expected.includes(account.version)) throw new PreconditionFailed(account);
    throw new AccountClosed(account);
  }

  /**
   * DELETE: closes an empty account. Safe to repeat without a key: closing a
   * closed account changes nothing and succeeds. One conditional UPDATE, on an
   * open account with nothing in it (and at a version If-Match names): a
   * deposit racing with it either lands first (then the account is not empty)
   * or finds it closed.
   */
  close(merchantId: string, id: string, expected: number[] | null): Promise<void> {
    return this.tx.run(() => this.closeInTransaction(merchantId, id, expected));
  }

  private async closeInTransaction(
    merchantId: string,
    id: string,
    expected: number[] | null,
  ): Promise<void> {
    const [closed] = await this.tx.query<Account>(
      `UPDATE accounts SET closed_at = now(), version = version + 1, updated_at = now()
        WHERE merchant_id = $1 AND id = $2 AND closed_at IS NULL AND balance = 0
          AND ($3::bigint[] IS NULL OR version = ANY ($3::bigint[]))
       RETURNING ${ACCOUNT_COLUMNS}`,
      [merchantId, id, expected],
    );
    if (closed) {
      this.events.recordAtCommit(merchantId, 'account.closed', toAccountView(closed));
      return;
    }

    const account = await this.get(merchantId, id);
    if (account.closedAt) return; // already closed: the same answer, nothing changes
    if (expected && !expected.includes(account.version)) throw new PreconditionFailed(account);
    throw new AccountNotEmpty(account);
  }
}

function hasFields(account: Account, fields: { name: string; metadata: Record<string, string> }) {
  const keys = Object.keys(fields.metadata);
  return (
    account.name === fields.name &&
    keys.length === Object.keys(account.metadata).length &&
    keys.every((key) => account.metadata[key] === fields.metadata[key])
  );
}

export class CurrencyMismatchError extends CommittedProblem {
  constructor(requested: string, account: Account) {
    super(
      'currency-mismatch',
      `The amount is in ${requested} but account ${account.id} holds ${account.currency}.`,
    );
  }
}

/** 409: a closed account is never moved again (stored and replayed on a money route). */
export class AccountClosed extends CommittedProblem {
  constructor(account: Account) {
    super('account-closed', `Account ${account.id} is closed: it takes no money and no changes.`);
  }
}

/** 409: only an empty account can be closed. */
export class AccountNotEmpty extends ProblemError {
  constructor(account: Account) {
    super(
      'account-not-empty',
      `Account ${account.id} holds money (balance ${account.balance}); move it out before closing the account.`,
      { balance: account.balance },
    );
  }
}

/** 412: the account changed since the client read the version its If-Match names. */
export class PreconditionFailed extends ProblemError {
  constructor(account: Account) {
    super(
      'precondition-failed',
      `Account ${account.id} has changed since the version If-Match names. Nothing was changed: read it again (GET gives its ETag), then decide.`,
    );
  }
}
