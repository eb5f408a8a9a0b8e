import { MoneyMovementDto } from '../../common/money.dto.js';

export class CreateDepositDto extends MoneyMovementDto {}
